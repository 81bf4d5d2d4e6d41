"""``valor-data build-shards`` and ``valor-data verify-splits``."""

from __future__ import annotations

import json
import sys

import click

from valor_data.commands.common import pipeline_option, workdir_option
from valor_data.workdir import Workdir


@click.command("build-shards")
@workdir_option
@pipeline_option
@click.option("--max-bytes", type=int, help="Close a shard before it passes this many bytes.")
@click.option("--max-samples", type=int, help="Close a shard at this many samples.")
@click.option("--workers", type=int, help="Shards written at once.")
@click.option("--presampled-frames", type=int,
              help="Also write K pre-sampled candidate frames per segment and the filterbank (0: off).")
@click.option("--presampled-resize", type=click.Choice(["squash", "crop"]),
              help="How the pre-sampled frames are resized, as the trainer's --frame-resize they serve "
                   "(default: squash, VALOR's recipes).")
@click.option("--captions", type=click.Choice(["human", "pseudo", "both"]),
              help="Whose captions the samples carry: the manifest's, the kept pseudo-captions, or both "
                   "(human where a clip has them). Default: human.")
def build_shards(workdir, pipeline, max_bytes, max_samples, workers, presampled_frames, presampled_resize, captions):
    """Write every split's WebDataset tars, index, shard lists, caption exports and dataset card."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.shards.build import build_shards as build
    from valor_data.shards.config import ShardConfig

    spec = load_pipeline(pipeline)
    overrides = {"max_bytes": max_bytes, "max_samples": max_samples, "workers": workers,
                 "presampled_frames": presampled_frames, "presampled_resize": presampled_resize, "captions": captions}
    summary = build(workdir, load_section(ShardConfig, spec, "shards", overrides), spec)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"shards: {workdir.path('shards')}")


@click.command("verify-splits")
@click.argument("workdir_arg", metavar="WORKDIR", required=False, type=click.Path(file_okay=False, exists=True))
@click.option("-w", "--workdir", envvar="VALOR_WORKDIR", type=click.Path(file_okay=False, exists=True),
              help="The work directory (instead of WORKDIR).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--full", is_flag=True, help="Decode every sample, not a seeded sample per split.")
@click.option("--sample", default=16, show_default=True, help="Samples decoded per split without --full.")
@click.option("--splits-only", is_flag=True, help="Only the table checks (before shards are built).")
def verify_splits(workdir_arg, workdir, as_json, full, sample, splits_only):
    """Check the split and shards of WORKDIR; exit 1 if any check fails."""
    from valor_data.shards.verify import VerifyOptions, verify

    if not (workdir_arg or workdir):
        raise click.UsageError("give WORKDIR (or -w)")
    report = verify(Workdir.create(workdir_arg or workdir), VerifyOptions(full, sample, splits_only))
    click.echo(json.dumps(report.as_dict(), indent=1) if as_json else "\n".join(report.lines()))
    sys.exit(0 if report.ok else 1)
