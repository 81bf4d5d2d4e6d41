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

Scoring is resumable per task (``W/scores/tasks/``), on the local pool or Ray; every clip ends
``ok`` or ``error`` with the reason. Tasks are planned in clip order, so every distributor
scores the same clips together and gives the same numbers (one CPU thread per worker).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from valor_data.curate.captions import choose, kept_captions
from valor_data.distribute import plan, read_results, run_tasks, stage_lock
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
    checkpoint_sha256: str = field(default="", repr=False)   # filled by the run

    def __post_init__(self):
        if self.batch_size < 1 or self.task_size < 1 or self.cpu_threads < 1:
            raise ValueError("batch_size, task_size and cpu_threads must be at least 1")
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


def run_score(workdir: Workdir, config: ScoreConfig, distributor: str = "local", workers: int = 1,
              ray_address: str | None = None, redo: str | None = None, limit: int | None = None) -> ScoreSummary:
    """Score what is not scored yet, then write ``W/scores.parquet`` (every fetched clip once)."""
    started = time.monotonic()
    config = prepared(config)
    with stage_lock(workdir, STAGE):
        clips = fetched_with_captions(workdir, config.captions)
        rows = clips.to_pylist()
        tasks = plan(rows, STAGE, workdir, scored_ids(workdir, STAGE, redo, config.checkpoint_sha256),
                     config.task_size, limit)
        scored = 0
        for result in run_tasks(score_task, tasks, config, distributor, workers, ray_address):
            scored += result["clips"]
            log.info("score task %d: %d clips %s (%d this run)", result["index"], result["clips"],
                     result["status"], scored)
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

    rows = scoring.score_rows(Workdir(Path(task.workdir)), list(task.rows), config)
    for row in rows:
        row["checkpoint_sha256"] = config.checkpoint_sha256
    return pa.Table.from_pylist(rows, schema=SCORE_SCHEMA)
