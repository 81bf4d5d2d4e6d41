"""``valor-data caption``: pseudo-captions for the fetched clips without one -> W/pseudo_captions.parquet."""

from __future__ import annotations

import click

from valor_data.commands.common import pipeline_option, placement_options, workdir_option


def parse_threshold(value: str | None) -> float | dict | None:
    """``0.3`` -> 0.3; ``p20`` -> {percentile: 20}; ``none`` -> keep every caption (None: the pipeline's)."""
    if value is None:
        return None
    if value.lower() == "none":
        return "none"
    try:
        return {"percentile": float(value[1:])} if value.lower().startswith("p") else float(value)
    except ValueError:
        raise click.BadParameter(f"expected a number, pP (a percentile) or none, got {value!r}",
                                 param_hint="--min-score") from None


@click.command("caption")
@workdir_option
@pipeline_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="A trainer checkpoint (ckpt.pt).")
@click.option("--min-score", help="Keep captions whose MGA t2av score is at least this: a number, pP (the P-th "
                                  "percentile of the generated ones) or none. Default: the pipeline's, else p20.")
@click.option("--beam", type=int, help="Beam size (VALOR: 3).")
@placement_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs.")
@click.option("--task-size", type=int, help="Clips per task (overrides the pipeline).")
@click.option("--redo", type=click.Choice(["all", "failed"]), help="Caption again: every clip, or failed ones.")
@click.option("--limit", type=int, help="Caption at most this many new clips.")
def caption(workdir, pipeline, checkpoint, min_score, beam, distributor, workers, gpus_per_worker, ray_address, device,
            task_size, redo, limit):
    """Generate audio-visual captions (MGC beam search) for uncaptioned clips, keep those MGA scores well."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.curate.pseudo import CaptionConfig, run_caption

    threshold = parse_threshold(min_score)
    overrides = {"checkpoint": checkpoint, "beam": beam, "device": device, "task_size": task_size,
                 "gpus_per_worker": gpus_per_worker}
    config = load_section(CaptionConfig, load_pipeline(pipeline), "caption",
                          {**overrides, "min_score": None if threshold == "none" else threshold})
    if threshold == "none":
        config.min_score = None
    summary = run_caption(workdir, config, distributor, workers, ray_address, redo, limit)
    if summary is not None:   # None: a torchrun rank other than 0
        click.echo("\n".join(summary.lines()))
        click.echo(f"table: {workdir.path('pseudo_captions.parquet')}")
