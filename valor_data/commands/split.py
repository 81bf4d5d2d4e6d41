"""``valor-data split``: kept clips -> splits (VALOR-1M / VALOR-32K, or Youku-mPLUG's published ones)."""

from __future__ import annotations

import click

from valor_data.commands.common import csv_list, pipeline_option, workdir_option


def parse_parts(value: str | None) -> dict[str, int] | None:
    """``valor32k-train=25000,valor32k-val=3500`` -> {name: size} (first part takes the remainder)."""
    if not value:
        return None
    parts = {}
    for item in csv_list(value):
        name, sep, size = item.partition("=")
        if not sep or not size.strip().isdigit():
            raise click.BadParameter(f"expected NAME=SIZE, got {item!r}", param_hint="--parts")
        parts[name.strip()] = int(size)
    return parts


def parse_official(items: tuple[str, ...], folder: str | None) -> dict[str, list[str]] | None:
    """``--official SPLIT=FILE`` (repeatable) and ``--valor-annotations DIR`` -> {split: [files]}."""
    from valor_data.split.official import discover

    found = discover(folder) if folder else {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected SPLIT=FILE, got {item!r}", param_hint="--official")
        found.setdefault(name.strip(), []).append(path.strip())
    return found or None


@click.command()
@workdir_option
@pipeline_option
@click.option("--seed", type=int, help="Seed of the video-id hash that orders every assignment.")
@click.option("--parts", help="Stratified part sizes, e.g. valor32k-train=25000,valor32k-val=3500,valor32k-test=3500.")
@click.option("--label-tolerance", type=float, help="Largest per-class share deviation verify accepts (0.02 = 2 pp).")
@click.option("--official", "official", multiple=True, metavar="SPLIT=FILE",
              help="Exact membership of SPLIT from an id file (desc_*.json, *_id.json, txt_mapper); repeatable.")
@click.option("--valor-annotations", type=click.Path(exists=True, file_okay=False),
              help="Folder of VALOR's annotation files (desc_{train,val,test}.json, {train,val,test}_id.json, "
                   "pretrain_ids.json): their splits get exactly VALOR's clips.")
@click.option("--captions", type=click.Choice(["human", "pseudo", "both"]),
              help="Keep only clips with a caption of this kind (both: human, else a kept pseudo-caption); "
                   "the others get reason no_caption.")
def split(workdir, pipeline, seed, parts, label_tolerance, official, valor_annotations, captions):
    """Give every manifest clip a split, or the reason it has none: WORKDIR/splits.parquet + splits.json."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.split import SplitConfig, run_split

    overrides = {"seed": seed, "parts": parse_parts(parts), "label_tolerance": label_tolerance,
                 "official": parse_official(official, valor_annotations), "captions": captions}
    cfg = load_section(SplitConfig, load_pipeline(pipeline), "split", overrides)
    for line in run_split(workdir, cfg).lines():
        click.echo(line)
