"""Cut a stage's clips into tasks, remember which finished, and merge their results.

Each task covers a few clips and ends in exactly one result table,
``W/<stage>/tasks/task-<index>.parquet``, written atomically by the worker that ran it.
A rerun reads those tables, skips clips whose latest row is final, and plans the rest
into new tasks with higher indices; ``collect`` keeps the latest row per clip. Killing
a run at any moment therefore loses at most the tasks in flight, never a result.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.errors import ValorError
from valor_data.table import write_table
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """A unit of work: the input rows of a few clips, and where its result goes."""

    stage: str
    index: int
    workdir: str
    rows: tuple[dict, ...]

    @property
    def result_path(self) -> Path:
        return task_dir(Workdir(Path(self.workdir)), self.stage) / f"task-{self.index:06d}.parquet"


def task_dir(workdir: Workdir, stage: str) -> Path:
    return workdir.path(stage, "tasks")


def _task_files(workdir: Workdir, stage: str) -> list[Path]:
    folder = task_dir(workdir, stage)
    return sorted(folder.glob("task-*.parquet")) if folder.exists() else []


def read_results(workdir: Workdir, stage: str, columns: list[str] | None = None) -> pa.Table | None:
    """All task tables of a stage in task order (older first), or None when there are none."""
    files = _task_files(workdir, stage)
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")


def latest(table: pa.Table) -> pa.Table:
    """Keep the last row per clip_id (rows are in task order, so the newest attempt wins)."""
    positions = pa.table({"clip_id": table.column("clip_id"), "i": pa.array(range(table.num_rows))})
    last = positions.group_by("clip_id").aggregate([("i", "max")]).column("i_max")
    return table.take(pc.take(last, pc.sort_indices(last)))


def finished(workdir: Workdir, stage: str, redo: Callable[[dict], bool] | None = None) -> set[str]:
    """Clip ids whose latest result is final (``redo(row)`` marks rows to run again)."""
    table = read_results(workdir, stage)
    if table is None:
        return set()
    rows = latest(table)
    if redo is None:
        return set(rows.column("clip_id").to_pylist())
    return {r["clip_id"] for r in rows.to_pylist() if not redo(r)}


def plan(rows: Iterable[dict], stage: str, workdir: Workdir, done: set[str], task_size: int,
         limit: int | None = None) -> Iterator[Task]:
    """Tasks of ``task_size`` clips over the rows not in ``done``, numbered after existing tasks."""
    files = _task_files(workdir, stage)
    index = int(files[-1].stem.split("-")[1]) + 1 if files else 0
    batch: list[dict] = []
    taken = 0
    for row in rows:
        if row["clip_id"] in done:
            continue
        if limit is not None and taken >= limit:
            break
        batch.append(row)
        taken += 1
        if len(batch) == task_size:
            yield Task(stage, index, str(workdir.root), tuple(batch))
            index, batch = index + 1, []
    if batch:
        yield Task(stage, index, str(workdir.root), tuple(batch))


def collect(workdir: Workdir, stage: str, out: Path | None = None) -> pa.Table | None:
    """Merge a stage's task tables (latest row per clip) into ``W/<stage>.parquet``."""
    table = read_results(workdir, stage)
    if table is None:
        return None
    table = latest(table)
    write_table(table, out or workdir.path(f"{stage}.parquet"))
    return table


@contextlib.contextmanager
def stage_lock(workdir: Workdir, stage: str) -> Iterator[None]:
    """Refuse a second run of ``stage`` on the same work dir while one runs.

    An flock is released by the OS when its process dies, so a crashed run never
    leaves the lock stuck.
    """
    path = workdir.path(stage, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:   # a mandatory lock (SMB on Linux >= 5.5) refuses this read: the message stays clear
                holder = Path(path).read_text().strip() or "another process"
            except OSError:
                holder = "another process"
            raise ValorError(f"a {stage} run is already using {workdir.root} (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
