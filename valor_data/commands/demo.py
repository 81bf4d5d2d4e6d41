"""``valor-data demo [WORKDIR]``: the whole job, offline, on a synthetic corpus served on loopback."""

from __future__ import annotations

import click


@click.command()
@click.argument("workdir", default="demo-work", type=click.Path(file_okay=False))
@click.option("--pipeline", type=click.Path(exists=True, dir_okay=False),
              help="Pipeline YAML with a demo: section [default: pipelines/demo.yaml].")
@click.option("--preset", type=click.Choice(["full", "small"]), default="full", show_default=True,
              help="small: the test-sized run (minutes; too few test clips for validation to pass).")
@click.option("--clips", type=int, help="Learnable clips in the corpus.")
@click.option("--defect-share", type=float, help="Share of defective clips (0.1: about 10%).")
@click.option("--seed", type=int, help="Seed of the corpus.")
@click.option("--workers", type=int, help="Corpus rendering processes (0: one per CPU).")
def demo(workdir, pipeline, preset, **flags):
    """Synthesise a corpus, serve it on 127.0.0.1, and run manifest -> fetch -> filter -> split ->
    build-shards -> verify-splits -> train --validate -> report on it (default WORKDIR: demo-work)."""
    from valor_data.config import load_pipeline
    from valor_data.demo import DEFAULT_PIPELINE, load_demo_config, run_demo
    from valor_data.workdir import Workdir

    spec = load_pipeline(pipeline or DEFAULT_PIPELINE)
    result = run_demo(Workdir.create(workdir), load_demo_config(spec, preset, flags), spec, echo=click.echo)
    if not result.ok:
        raise click.exceptions.Exit(1)
