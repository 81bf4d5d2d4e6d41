"""``valor-data filter``: measure, judge and de-duplicate clips into WORKDIR/quality.parquet."""

from __future__ import annotations

import click

from valor_data.commands.common import pipeline_option, workdir_option


@click.command("filter")
@workdir_option
@pipeline_option
@click.option("--media-dir", type=click.Path(exists=True, file_okay=False),
              help="Filter every media file of this folder instead of the fetched clips.")
@click.option("--distributor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--workers", default=0, help="Worker processes (0: one per CPU).")
@click.option("--ray-address", help="Ray cluster to join (with --distributor ray).")
@click.option("--redo", type=click.Choice(["all", "failed"]), help="Measure again: every clip, or failed ones.")
@click.option("--limit", type=int, help="Measure at most this many new clips.")
@click.option("--timeout", "timeout_s", type=float, help="Per-clip timeout in seconds (overrides the pipeline).")
@click.option("--explain", "explain_id", metavar="CLIP_ID", help="Print one clip's metrics against the thresholds.")
def filter_(workdir, pipeline, media_dir, distributor, workers, ray_address, redo, limit, timeout_s, explain_id):
    """Reject corrupt, low-quality and near-duplicate clips, with the measured reasons."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.curate import run
    from valor_data.curate.config import FilterConfig

    config = load_section(FilterConfig, load_pipeline(pipeline), "filter", {"timeout_s": timeout_s})
    if explain_id:
        click.echo("\n".join(run.explain(workdir, explain_id, config)))
        return
    summary = run.run_filter(workdir, config, media_dir, distributor, workers, ray_address, redo, limit)
    click.echo("\n".join(summary.lines()))
    click.echo(f"tables: {workdir.path('quality.parquet')}  {workdir.path('signatures.parquet')}")
