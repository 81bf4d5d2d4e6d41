"""Pseudo-captions (``valor-data caption``): MGC beam search for the fetched clips without a
caption, each scored by MGA, kept above a threshold -> ``W/pseudo_captions.parquet``.

Generation is the expensive part and is resumable per task (``W/pseudo/tasks/``, on the local
pool, Ray or torchrun's ranks, placed on GPUs as ``score``'s); the threshold (``min_score``: a
number, or ``{percentile: P}`` of the generated captions' scores) is applied to the stored scores
on every run, so changing it regenerates nothing. One row per uncaptioned fetched clip:
``caption``, its MGA similarities ``tv`` / ``ta`` / ``tav`` with the clip, its MGC ``loglik``,
the clip's ``av_score``, ``kept``, and the checkpoint's ``checkpoint_sha256``. split and
build-shards read the kept ones (``--captions pseudo|both``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from valor_data.curate import agreement
from valor_data.curate.captions import PSEUDO_FILE
from valor_data.curate.score import (
    ScoreSummary,
    check_placement,
    fetched_with_captions,
    prepared,
    run_model_tasks,
    scored_ids,
    stamped,
)
from valor_data.distribute import plan, read_results, stage_lock, torchrun_rank
from valor_data.distribute.tasks import Task, latest
from valor_data.table import write_table
from valor_data.workdir import Workdir

STAGE = "pseudo"
GENERATED_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),       # ok | error
    pa.field("error", pa.string()),
    pa.field("caption", pa.string()),
    *(pa.field(name, pa.float64()) for name in ("tv", "ta", "tav", "loglik", "av_score")),
    pa.field("checkpoint_sha256", pa.string()),
])


@dataclass
class CaptionConfig:
    """The ``caption:`` section of a pipeline YAML."""

    checkpoint: str = ""
    min_score: float | dict | None = field(default_factory=lambda: {"percentile": 20})  # on tav; None: keep all
    beam: int = 3                   # VALOR's beam
    max_tokens: int = 30            # the closing [SEP] included (VALOR: 30)
    length_penalty: float = 0.0
    batch_size: int = 16
    task_size: int = 64
    device: str = "auto"
    bf16: bool = True
    cpu_threads: int = 1
    gpus_per_worker: float | None = None   # None: 1 when the model runs on CUDA, else 0
    rank_timeout_s: float = 1800.0  # torchrun: the longest a rank waits for the others at a barrier
    checkpoint_sha256: str = field(default="", repr=False)

    def __post_init__(self):
        if self.beam < 1 or self.max_tokens < 2 or self.batch_size < 1 or self.task_size < 1 or self.cpu_threads < 1:
            raise ValueError("beam, batch_size, task_size, cpu_threads must be >= 1 and max_tokens >= 2")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.min_score is not None and not isinstance(self.min_score, int | float | dict):
            raise ValueError(f"min_score must be a number or {{percentile: P}}, not {self.min_score!r}")
        check_placement(self)


def uncaptioned(workdir: Workdir) -> pa.Table:
    """clip_id of every fetched clip without a caption, in clip order."""
    clips = fetched_with_captions(workdir)
    empty = pc.fill_null(pc.equal(pc.list_value_length(clips["captions"]), 0), True)
    return clips.filter(empty).select(["clip_id"])


def run_caption(workdir: Workdir, config: CaptionConfig, distributor: str = "local", workers: int = 1,
                ray_address: str | None = None, redo: str | None = None,
                limit: int | None = None) -> ScoreSummary | None:
    """Caption what has no caption yet, then judge every generated caption into ``W/pseudo_captions.parquet``.
    None on a torchrun rank other than 0 (rank 0 judges and reports)."""
    started = time.monotonic()
    rank, _ = torchrun_rank(distributor)
    config = prepared(config)
    with stage_lock(workdir, STAGE) if rank == 0 else contextlib.nullcontext():
        clips = uncaptioned(workdir)
        tasks = plan(clips.to_pylist(), STAGE, workdir, scored_ids(workdir, STAGE, redo, config.checkpoint_sha256),
                     config.task_size, limit)
        made = run_model_tasks(STAGE, caption_task, tasks, config, distributor, workers, ray_address)
        if rank:
            return None
        table = judge(workdir, config, clips.column("clip_id"))
    statuses = {"kept": sum(table.column("kept").to_pylist())} if table.num_rows else {}
    statuses["generated"] = table.num_rows
    return ScoreSummary(table.num_rows, made, statuses, time.monotonic() - started)


def judge(workdir: Workdir, config: CaptionConfig, wanted: pa.ChunkedArray) -> pa.Table:
    """Every generated caption with ``kept`` under the current threshold, into ``W/pseudo_captions.parquet``."""
    table = read_results(workdir, STAGE)
    table = GENERATED_SCHEMA.empty_table() if table is None else latest(table.cast(GENERATED_SCHEMA))
    table = table.filter(pc.is_in(table["clip_id"], wanted.combine_chunks())).sort_by("clip_id")
    ok = [s == "ok" and v is not None for s, v in zip(table["status"].to_pylist(), table["tav"].to_pylist(), strict=True)]
    values = [v for v, good in zip(table["tav"].to_pylist(), ok, strict=True) if good]
    threshold = agreement.bound(config.min_score, values, "min_score") if values else None
    kept = [good and (threshold is None or v >= threshold) for v, good in zip(table["tav"].to_pylist(), ok, strict=True)]
    table = table.append_column("kept", pa.array(kept, pa.bool_()))
    write_table(table, workdir.path(PSEUDO_FILE))
    return table


def caption_task(task: Task, config: CaptionConfig) -> pa.Table:
    """Caption and score the clips of one task (runs in a worker process)."""
    from valor_data.curate import scoring

    return stamped(scoring.caption_rows(Workdir(Path(task.workdir)), list(task.rows), config), config,
                   GENERATED_SCHEMA)
