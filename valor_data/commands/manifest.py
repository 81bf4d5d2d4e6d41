"""``valor-data manifest audioset|valor-captions|youku|urls``: metadata -> clip table."""

from __future__ import annotations

import click

from valor_data import manifest as lib
from valor_data.commands.common import csv_list, split_spec, workdir_option
from valor_data.sources.audioset import YOUTUBE_URL, subset_from_filename
from valor_data.sources.youku import MODELSCOPE_BASE

YOUKU_BASE_HELP = ("Where the CSVs' :FILE paths (videos/<subset>/<file>) are: 'modelscope' (ModelScope's "
                   f"public files, {MODELSCOPE_BASE}<:FILE>), an http(s) mirror of that layout, or a local "
                   "directory holding videos/ (read in place; no --allow-file-urls needed).")

strict_option = click.option("--strict", is_flag=True,
                             help="Any row that cannot be read, or a num_segs= header mismatch, is fatal.")


def _report(summary: lib.ManifestSummary, workdir) -> None:
    for line in summary.lines():
        click.echo(line)
    click.echo(f"tables: {workdir.manifest}  {workdir.rejects}")


@click.group()
def manifest() -> None:
    """Read a corpus's metadata files into WORKDIR/manifest.parquet (+ rejects.parquet)."""


@manifest.command("audioset")
@click.argument("csvs", nargs=-1)
@workdir_option
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), help="class_labels_indices.csv")
@click.option("--ontology", type=click.Path(exists=True, dir_okay=False), help="ontology.json")
@click.option("--captions", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="VALOR caption JSON to join (repeatable).")
@click.option("--download", is_flag=True, help="Fetch the official CSVs, class index and ontology first.")
@click.option("--subset", "subsets", default="balanced_train,eval", show_default=True,
              help="Subsets to --download.")
@click.option("--base-url", help="Mirror to --download from instead of Google's bucket.")
@click.option("--url-template", default=YOUTUBE_URL, show_default=True, help="Media URL per video id.")
@strict_option
def audioset(csvs, workdir, labels, ontology, captions, download, subsets, base_url, url_template, strict):
    """AudioSet segment CSVs (either layout); CSV may be given as SUBSET=PATH.

    Files of the same subset are all read (a segment in two of them is kept once, the other a
    duplicate_segment reject). A header's num_segs= that disagrees with the rows is a warning.
    """
    paths = [(subset or subset_from_filename(path), path) for subset, path in map(split_spec, csvs)]
    if download:
        fetched, labels, ontology = lib.download_audioset(workdir, csv_list(subsets), base_url)
        paths = list(fetched.items()) + paths
    if not paths:
        raise click.UsageError("give segment CSVs or --download")
    summary = lib.build_audioset(workdir, paths, labels, ontology, list(captions), url_template, strict,
                                 check_expected=download)
    _report(summary, workdir)


@manifest.command("valor-captions")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@workdir_option
def valor_captions(files, workdir):
    """Join VALOR caption JSON (desc_*.json or an id -> captions map) onto the manifest."""
    _report(lib.join_valor_captions(workdir, list(files)), workdir)


@manifest.command("youku")
@click.argument("csvs", nargs=-1, required=True)
@workdir_option
@click.option("--base-url", required=True, help=YOUKU_BASE_HELP)
@strict_option
def youku(csvs, workdir, base_url, strict):
    """Youku-mPLUG CSVs (pretrain.csv, classification_*.csv, retrieval_*.csv, captioning_*.csv)."""
    _report(lib.build_youku(workdir, [split_spec(c) for c in csvs], base_url, strict), workdir)


@manifest.command("urls")
@click.argument("files", nargs=-1, required=True)
@workdir_option
@strict_option
def urls(files, workdir, strict):
    """URL lists (csv, tsv, jsonl, parquet); a file may be given as SUBSET=PATH."""
    _report(lib.build_urls(workdir, [split_spec(f) for f in files], strict), workdir)
