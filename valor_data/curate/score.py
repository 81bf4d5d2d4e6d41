"""Learned scores of every fetched clip from a trained VALOR checkpoint (``valor-data score``).

The clips are the fetched ones (``fetch.parquet`` status ok) with their manifest captions;
each is decoded from ``W/media`` exactly as the trainer decodes a shard sample (the same
raw-bytes members through ``presampled.frames`` / ``presampled.fbank``) and run through the
validator's own encoders (``evaluate.encode_clips`` / ``encode_captions`` / ``similarities``).
Per clip (``W/scores.parquet``):

- ``tv`` / ``ta`` / ``tav``: each caption's MGA similarity with the clip's frames, audio and
  both (lists, one per caption), and ``<group>_first`` / ``<group>_max`` over them;
- ``loglik``: each caption's MGC log-likelihood given the clip's audio and frames (mean over its
  tokens, the closing [SEP] included; each token predicted from the words before it and a
  [MASK], as the decoder generates), and ``loglik_first`` / ``loglik_max``;
- ``av_score``: whether the clip's audio belongs to its frames, against the other clips of the
  same task: the validator's ``va`` view (``evaluate.video_to_audio``: the task's captions that
  fit the frames name the sound), the log of how much more its own audio is chosen than
  chance, from its frames (row) and for its audio (column), averaged (``scoring.av_scores``).
  Null when the task holds fewer than two clips or no caption (the captions are the bridge).

Scoring is resumable per task (``W/scores/tasks/``), on the local pool, Ray or torchrun's ranks;
every clip ends ``ok`` or ``error`` with the reason. Tasks are planned in clip order, so every
distributor scores the same clips together and gives the same numbers (one CPU thread per worker).
On CUDA each worker holds one GPU (``gpu_placement``); under torchrun every rank scores its share
on ``cuda:LOCAL_RANK`` and rank 0 alone holds the stage lock and collects ``W/scores.parquet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from valor_data.curate.captions import choose, kept_captions
from valor_data.distribute import plan, read_results, run_tasks, stage_lock, torchrun_rank
from valor_data.distribute.tasks import Task, latest
from valor_data.errors import ValorError
from valor_data.table import read_table, write_table
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

STAGE = "scores"
SCORES_FILE = "scores.parquet"
GROUPS = ("tv", "ta", "tav")
_FLOATS = pa.list_(pa.float64())
SCORE_SCHEMA = pa.schema([
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),       # ok | error
    pa.field("error", pa.string()),
    pa.field("captions", pa.int32()),
    *(pa.field(g, _FLOATS) for g in (*GROUPS, "loglik")),
    *(pa.field(f"{g}_{k}", pa.float64()) for g in (*GROUPS, "loglik") for k in ("first", "max")),
    pa.field("av_score", pa.float64()),
    pa.field("task_clips", pa.int32()),                     # the clips av_score was measured against
    pa.field("checkpoint_sha256", pa.string()),
])


@dataclass
class ScoreConfig:
    """The ``score:`` section of a pipeline YAML."""

    checkpoint: str = ""            # a trainer checkpoint (ckpt.pt)
    batch_size: int = 16            # clips per forward pass
    task_size: int = 64             # clips per task; av_score compares a clip with the others of its task
    device: str = "auto"            # auto | cpu | cuda
    bf16: bool = True               # autocast to bfloat16 on CUDA (CPU: float32)
    cpu_threads: int = 1            # torch threads per worker on CPU (1: one core each, reproducible)
    captions: str = "human"         # human | pseudo | both: which captions are scored (``captions.choose``)
    gpus_per_worker: float | None = None   # None: 1 when the model runs on CUDA, else 0 (CPU placement)
    rank_timeout_s: float = 1800.0  # torchrun: the longest a rank waits for the others at a barrier
    checkpoint_sha256: str = field(default="", repr=False)   # filled by the run

    def __post_init__(self):
        if self.batch_size < 1 or self.task_size < 1 or self.cpu_threads < 1:
            raise ValueError("batch_size, task_size and cpu_threads must be at least 1")
        check_placement(self)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.captions not in ("human", "pseudo", "both"):
            raise ValueError(f"captions must be human, pseudo or both, not {self.captions!r}")


@dataclass
class ScoreSummary:
    clips: int = 0
    scored_now: int = 0
    statuses: dict = field(default_factory=dict)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        states = "  ".join(f"{k} {v:,}" for k, v in sorted(self.statuses.items()))
        return [f"clips {self.clips:,}  scored now {self.scored_now:,}  {states}  ({self.seconds:.1f} s)"]


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetched_with_captions(workdir: Workdir, mode: str = "human") -> pa.Table:
    """clip_id and captions of every clip fetch delivered (status ok), in clip order; ``mode``
    pseudo or both: the kept pseudo-captions of ``valor-data caption`` (``captions.choose``)."""
    fetch_path = workdir.path("fetch.parquet")
    if not workdir.manifest.exists() or not fetch_path.exists():
        raise ValorError(f"{workdir.root} has no manifest.parquet + fetch.parquet: run fetch first")
    fetched = read_table(fetch_path, columns=["clip_id", "status"])
    ok = fetched.filter(pc.equal(fetched["status"], "ok")).column("clip_id").combine_chunks()
    manifest = read_table(workdir.manifest, columns=["clip_id", "captions"])
    clips = manifest.filter(pc.is_in(manifest["clip_id"], ok)).sort_by("clip_id")
    if mode == "human":
        return clips
    pseudo = kept_captions(workdir)
    chosen = [choose(c, pseudo.get(i), mode)[0]
              for i, c in zip(clips["clip_id"].to_pylist(), clips["captions"].to_pylist(), strict=True)]
    return pa.table({"clip_id": clips["clip_id"], "captions": pa.array(chosen, pa.list_(pa.string()))})


def prepared(config: ScoreConfig) -> ScoreConfig:
    """``config`` with the checkpoint's hash (checked to exist)."""
    if not config.checkpoint:
        raise ValorError("no checkpoint: pass --checkpoint (a trainer ckpt.pt)")
    if not Path(config.checkpoint).is_file():
        raise ValorError(f"checkpoint not found: {config.checkpoint}")
    config.checkpoint_sha256 = sha256_file(config.checkpoint)
    return config


def scored_ids(workdir: Workdir, stage: str, redo: str | None, checkpoint_sha256: str) -> set[str]:
    """Clips with a result from this checkpoint (``redo``: "all" -> none, "failed" -> only status ok)."""
    table = read_results(workdir, stage, columns=["clip_id", "status", "checkpoint_sha256"])
    if table is None or redo == "all":
        return set()
    table = latest(table)
    table = table.filter(pc.equal(table["checkpoint_sha256"], checkpoint_sha256))
    if redo == "failed":
        table = table.filter(pc.equal(table["status"], "ok"))
    return set(table.column("clip_id").to_pylist())


def check_placement(config) -> None:
    """``gpus_per_worker`` and ``rank_timeout_s`` of a score or caption config are in range."""
    if config.gpus_per_worker is not None and config.gpus_per_worker < 0:
        raise ValueError(f"gpus_per_worker must be at least 0, not {config.gpus_per_worker}")
    if config.rank_timeout_s <= 0:
        raise ValueError(f"rank_timeout_s must be positive, not {config.rank_timeout_s}")


def visible_gpus() -> tuple[str, ...]:
    """The GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU torch counts."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return tuple(part.strip() for part in listed.split(",") if part.strip())
    import torch

    return tuple(str(i) for i in range(torch.cuda.device_count()))


def gpu_placement(config, distributor: str) -> tuple[float, tuple[str, ...]]:
    """(GPUs per worker, the GPU ids a local pool pins its workers to): ``config.gpus_per_worker``,
    else 1 when the model runs on CUDA (``device`` cuda, or auto and this process sees a GPU)."""
    gpus = config.gpus_per_worker
    if gpus is None:
        if config.device == "auto":
            import torch

            gpus = 1.0 if torch.cuda.is_available() else 0.0
        else:
            gpus = 1.0 if config.device == "cuda" else 0.0
    return gpus, visible_gpus() if gpus and distributor == "local" else ()


def run_model_tasks(stage: str, fn, tasks, config, distributor: str, workers: int, ray_address: str | None) -> int:
    """Run score or caption tasks on the GPUs ``gpu_placement`` gives; the clips they held."""
    gpus, gpu_ids = gpu_placement(config, distributor)
    done = 0
    for result in run_tasks(fn, tasks, config, distributor, workers, ray_address, gpus=gpus, gpu_ids=gpu_ids,
                            rank_timeout_s=config.rank_timeout_s):
        done += result["clips"]
        log.info("%s task %d: %d clips %s (%d this run)", stage, result["index"], result["clips"],
                 result["status"], done)
    return done


def run_score(workdir: Workdir, config: ScoreConfig, distributor: str = "local", workers: int = 1,
              ray_address: str | None = None, redo: str | None = None,
              limit: int | None = None) -> ScoreSummary | None:
    """Score what is not scored yet, then write ``W/scores.parquet`` (every fetched clip once).
    None on a torchrun rank other than 0 (rank 0 collects and reports)."""
    started = time.monotonic()
    rank, _ = torchrun_rank(distributor)
    config = prepared(config)
    with stage_lock(workdir, STAGE) if rank == 0 else contextlib.nullcontext():
        clips = fetched_with_captions(workdir, config.captions)
        rows = clips.to_pylist()
        tasks = plan(rows, STAGE, workdir, scored_ids(workdir, STAGE, redo, config.checkpoint_sha256),
                     config.task_size, limit)
        scored = run_model_tasks(STAGE, score_task, tasks, config, distributor, workers, ray_address)
        if rank:
            return None
        table = collect_scores(workdir, clips.column("clip_id"))
    statuses = dict(Counter(table.column("status").to_pylist()))
    return ScoreSummary(table.num_rows, scored, statuses, time.monotonic() - started)


def collect_scores(workdir: Workdir, wanted: pa.ChunkedArray, stage: str = STAGE,
                   out: str = SCORES_FILE) -> pa.Table:
    """The latest row of every wanted clip, sorted by clip, into ``W/<out>``."""
    table = read_results(workdir, stage)
    table = SCORE_SCHEMA.empty_table() if table is None else latest(table)
    table = table.filter(pc.is_in(table["clip_id"], wanted.combine_chunks())).sort_by("clip_id")
    write_table(table, workdir.path(out))
    return table


def score_task(task: Task, config: ScoreConfig) -> pa.Table:
    """Score the clips of one task (runs in a worker process)."""
    from valor_data.curate import scoring

    return stamped(scoring.score_rows(Workdir(Path(task.workdir)), list(task.rows), config), config, SCORE_SCHEMA)


def stamped(rows: list[dict], config, schema: pa.Schema) -> pa.Table:
    """A task's result rows with the checkpoint's hash, as a table of ``schema``."""
    for row in rows:
        row["checkpoint_sha256"] = config.checkpoint_sha256
    return pa.Table.from_pylist(rows, schema=schema)
