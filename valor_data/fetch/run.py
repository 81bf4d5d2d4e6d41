"""Drive a fetch: lock, clean, plan the unfinished clips, run the tasks, show progress, merge.

``run_fetch`` is what ``valor-data fetch`` calls. It holds the ``fetch`` stage lock for
the whole run, removes temps a killed run left, plans tasks over the manifest rows not
finished yet (``--retry-failed``: also rerun failed_transient and rate_limited), runs
them on a local pool or Ray, and merges the task tables into ``W/fetch.parquet``. It
keeps ``W/fetch/progress.json`` current so ``fetch_status`` can report on a run in flight.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.distribute import collect, finished, plan, read_results, run_tasks, stage_lock
from valor_data.distribute.tasks import latest
from valor_data.errors import ValorError
from valor_data.fetch.config import FetchConfig
from valor_data.fetch.outcome import RETRYABLE, STATUSES, DiskFullError, disk_full, is_disk_full
from valor_data.fetch.store import MediaStore
from valor_data.fetch.worker import fetch_task
from valor_data.workdir import Workdir, atomic_path

log = logging.getLogger(__name__)

STAGE = "fetch"
ROW_COLUMNS = ["clip_id", "source", "video_id", "url", "start_s", "end_s", "checksum"]


@dataclass
class FetchSummary:
    """This run's counts and the state of every clip after it."""

    planned: int = 0
    run: Counter = field(default_factory=Counter)        # outcomes of this run
    total: Counter = field(default_factory=Counter)      # latest status of every clip fetched so far
    manifest_clips: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return sum(self.run.values()) / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        done = sum(self.run.values())
        out = [f"fetched {done:,} of {self.planned:,} planned clips in {self.seconds:,.1f} s ({self.rate:.2f} clips/s)",
               f"{'status':<18}{'this run':>10}{'all clips':>11}"]
        for status in STATUSES:
            out.append(f"{status:<18}{self.run.get(status, 0):>10,}{self.total.get(status, 0):>11,}")
        pending = self.manifest_clips - sum(self.total.values())
        out.append(f"{'not fetched yet':<18}{'':>10}{pending:>11,}")
        return out


def manifest_rows(path: os.PathLike, batch_size: int = 8192) -> Iterator[dict]:
    """The manifest's rows (only what fetch needs), streamed batch by batch (a manifest written
    before a column existed simply lacks it)."""
    parquet = pq.ParquetFile(path)
    columns = [c for c in ROW_COLUMNS if c in parquet.schema_arrow.names]
    for batch in parquet.iter_batches(batch_size=batch_size, columns=columns):
        yield from batch.to_pylist()


def _todo(path: os.PathLike, done: set[str], limit: int | None) -> tuple[int, int]:
    """(clips this run will plan, clips in the manifest)."""
    ids = pq.read_table(path, columns=["clip_id"]).column("clip_id")
    skipped = pc.sum(pc.is_in(ids, value_set=pa.array(list(done), pa.string()))).as_py() if done else 0
    remaining = len(ids) - (skipped or 0)
    return (min(remaining, limit) if limit is not None else remaining), len(ids)


def run_fetch(workdir: Workdir, cfg: FetchConfig, limit: int | None = None, retry_failed: bool = False,
              distributor: str = "local", ray_address: str | None = None, progress: bool = True) -> FetchSummary:
    """Fetch every unfinished clip of ``W/manifest.parquet``; return the summary."""
    if not workdir.manifest.exists():
        raise ValorError(f"{workdir.manifest} does not exist: build the manifest first (valor-data manifest ...)")
    with stage_lock(workdir, STAGE):
        MediaStore(workdir, cfg.media_url).clean_stale()
        done = finished(workdir, STAGE, (lambda r: r["status"] in RETRYABLE) if retry_failed else None)
        planned, total = _todo(workdir.manifest, done, limit)
        summary = FetchSummary(planned=planned, manifest_clips=total)
        tasks = plan(manifest_rows(workdir.manifest), STAGE, workdir, done, cfg.task_size, limit)
        started = time.time()
        _progress(workdir, summary, started, "running")
        try:
            _drive(tasks, cfg, distributor, ray_address, summary, workdir, started, progress)
        except (DiskFullError, OSError) as exc:
            if not isinstance(exc, DiskFullError) and not is_disk_full(exc):
                raise
            cause = getattr(exc, "cause", None) or exc      # Ray wraps the worker's exception
            error = cause if isinstance(cause, DiskFullError) else disk_full(str(workdir.root))
            _finish(workdir, summary, started, "stopped", str(error).splitlines()[0])
            raise DiskFullError(str(error).splitlines()[0]) from None
        _finish(workdir, summary, started, "finished")
        MediaStore(workdir, cfg.media_url).clean_stale()   # also what a killed run's stragglers wrote late
    return summary


def _drive(tasks, cfg: FetchConfig, distributor: str, ray_address: str | None, summary: FetchSummary,
           workdir: Workdir, started: float, progress: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=summary.planned, unit="clip", desc="fetch", disable=not progress, dynamic_ncols=True) as bar:
        for result in run_tasks(fetch_task, tasks, cfg, distributor=distributor, workers=cfg.workers,
                                ray_address=ray_address):
            summary.run.update(result["status"])
            summary.seconds = time.time() - started
            bar.update(result["clips"])
            bar.set_postfix({k: v for k, v in sorted(summary.run.items())}, refresh=False)
            _progress(workdir, summary, started, "running")


def _finish(workdir: Workdir, summary: FetchSummary, started: float, state: str, message: str = "") -> None:
    """Merge the task tables and record the final state (tolerating a full disk when stopping)."""
    summary.seconds = time.time() - started
    try:
        table = collect(workdir, STAGE)
        if table is not None:
            summary.total = Counter(table.column("status").to_pylist())
        _progress(workdir, summary, started, state, message)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        if state != "stopped":
            raise disk_full(str(workdir.root)) from None
        log.warning("could not merge the fetch tables on a full disk: %s", exc)


def _progress(workdir: Workdir, summary: FetchSummary, started: float, state: str, message: str = "") -> None:
    data = {"state": state, "message": message, "pid": os.getpid(), "host": socket.gethostname(),
            "started": started, "updated": time.time(), "planned": summary.planned,
            "done": sum(summary.run.values()), "counts": dict(summary.run)}
    with atomic_path(workdir.path(STAGE, "progress.json")) as tmp:
        tmp.write_text(json.dumps(data))


def _running(workdir: Workdir) -> bool:
    """True while a fetch holds the stage lock (probed without blocking, released at once)."""
    path = workdir.path(STAGE, ".lock")
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def fetch_status(workdir: Workdir) -> list[str]:
    """Lines describing the progress of a fetch in flight or finished."""
    results = read_results(workdir, STAGE, columns=["clip_id", "status"])
    counts = Counter(latest(results).column("status").to_pylist()) if results is not None else Counter()
    total = pq.ParquetFile(workdir.manifest).metadata.num_rows if workdir.manifest.exists() else None
    progress_path = workdir.path(STAGE, "progress.json")
    info = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    running = _running(workdir)
    state = "running" if running else {"running": "interrupted"}.get(info.get("state"), info.get("state", "not started"))
    lines = [f"fetch in {workdir.root}: {state}" + (f" ({info['message']})" if info.get("message") else "")]
    if info:
        elapsed = (time.time() if running else info["updated"]) - info["started"]
        rate = info["done"] / elapsed if elapsed > 0 else 0.0
        line = f"this run: {info['done']:,} of {info['planned']:,} clips, {rate:.2f} clips/s, {elapsed:,.0f} s"
        if running and rate > 0:
            line += f", ETA {(info['planned'] - info['done']) / rate:,.0f} s"
        lines.append(line)
    fetched = sum(counts.values())
    lines.append(f"clips with a result: {fetched:,}" + (f" of {total:,} in the manifest" if total is not None else ""))
    lines += [f"  {status:<18}{counts.get(status, 0):>10,}" for status in STATUSES]
    return lines
