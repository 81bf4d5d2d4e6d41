"""Options and parsers shared by every stage command."""

from __future__ import annotations

import click

from valor_data.workdir import Workdir


def _to_workdir(ctx, param, value):
    return Workdir.create(value) if value is not None else None


workdir_option = click.option(
    "-w", "--workdir", required=True, envvar="VALOR_WORKDIR", callback=_to_workdir,
    type=click.Path(file_okay=False), help="Work directory holding every stage's tables (env VALOR_WORKDIR).")

pipeline_option = click.option(
    "--pipeline", type=click.Path(exists=True, dir_okay=False), default=None,
    help="Pipeline YAML (pipelines/*.yaml) with per-stage settings; flags override it.")


_PLACEMENT = (
    click.option("--distributor", type=click.Choice(["local", "ray", "torchrun"]), default="local", show_default=True,
                 help="torchrun: one process per GPU, started by torchrun --nproc_per_node N $(which valor-data)."),
    click.option("--workers", default=1, show_default=True, help="Worker processes or Ray actors (one per GPU on CUDA)."),
    click.option("--gpus-per-worker", type=float, help="GPUs each worker holds (default 1 when the model runs on "
                                                        "CUDA, else 0; Ray takes fractions)."),
    click.option("--ray-address", help="Ray cluster to join (with --distributor ray)."),
)


def placement_options(command):
    """``--distributor``, ``--workers``, ``--gpus-per-worker``, ``--ray-address``: where the commands
    that run a checkpoint over clips (score, caption) run it."""
    for option in reversed(_PLACEMENT):
        command = option(command)
    return command


def split_spec(value: str) -> tuple[str | None, str]:
    """``subset=path`` -> (subset, path); a bare ``path`` -> (None, path)."""
    name, sep, path = value.partition("=")
    return (name, path) if sep and name and "/" not in name else (None, value)


def csv_list(value: str | None) -> list[str]:
    """``a,b, c`` -> ``["a", "b", "c"]``."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]
