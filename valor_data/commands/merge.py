"""``valor-data merge W1 W2 ... -w W``: join fetch work dirs into W, clip by clip."""

from __future__ import annotations

import click

from valor_data.commands.common import workdir_option


@click.command("merge")
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@workdir_option
@click.option("--copy", is_flag=True, help="Copy the media instead of hard-linking them.")
def merge(sources, workdir, copy) -> None:
    """Merge the fetch results and media of SOURCES (same manifest, e.g. --partition runs) into WORKDIR."""
    from valor_data.fetch.merge import merge_workdirs
    from valor_data.workdir import Workdir

    report = merge_workdirs([Workdir.create(s) for s in sources], workdir, link=not copy)
    click.echo("\n".join(report.lines()))
    click.echo(f"table: {workdir.path('fetch.parquet')}")
