"""``valor-data score``: every fetched clip's agreement scores from a trained checkpoint -> W/scores.parquet."""

from __future__ import annotations

import click

from valor_data.commands.common import pipeline_option, placement_options, workdir_option


@click.command("score")
@workdir_option
@pipeline_option
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="A trainer checkpoint (ckpt.pt).")
@placement_options
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where the model runs (overrides the pipeline).")
@click.option("--batch-size", type=int, help="Clips per forward pass (overrides the pipeline).")
@click.option("--task-size", type=int, help="Clips per task (overrides the pipeline).")
@click.option("--captions", type=click.Choice(["human", "pseudo", "both"]),
              help="Which captions to score: the manifest's (default), the kept pseudo-captions, or both.")
@click.option("--redo", type=click.Choice(["all", "failed"]), help="Score again: every clip, or failed ones.")
@click.option("--limit", type=int, help="Score at most this many new clips.")
def score(workdir, pipeline, checkpoint, distributor, workers, gpus_per_worker, ray_address, device, batch_size,
          task_size, captions, redo, limit):
    """MGA similarities, MGC log-likelihoods and the audio-video correspondence of every fetched clip."""
    from valor_data.config import load_pipeline, load_section
    from valor_data.curate.score import ScoreConfig, run_score

    config = load_section(ScoreConfig, load_pipeline(pipeline), "score",
                          {"checkpoint": checkpoint, "device": device, "batch_size": batch_size,
                           "task_size": task_size, "captions": captions, "gpus_per_worker": gpus_per_worker})
    summary = run_score(workdir, config, distributor, workers, ray_address, redo, limit)
    if summary is not None:   # None: a torchrun rank other than 0
        click.echo("\n".join(summary.lines()))
        click.echo(f"table: {workdir.path('scores.parquet')}")
