"""``valor-data report WORKDIR``: every stage's tables as one HTML page of figures."""

from __future__ import annotations

import click

from valor_data.commands.common import pipeline_option
from valor_data.workdir import Workdir


@click.command()
@click.argument("workdir", type=click.Path(exists=True, file_okay=False))
@pipeline_option
def report(workdir, pipeline):
    """Write WORKDIR/report/index.html (figures embedded) and the figures as PNG files."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.curate.config import FilterConfig
    from valor_data.report.html import build_report

    thresholds = load_section(FilterConfig, load_pipeline(pipeline), "filter")
    path = build_report(Workdir.create(workdir), thresholds)
    click.echo(f"report: {path}")
