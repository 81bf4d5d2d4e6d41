"""Drive a fetch: lock, clean, plan the unfinished clips, run the tasks, show progress, merge.

``run_fetch`` is what ``valor-data fetch`` calls. It holds the ``fetch`` stage lock for
the whole run, removes temps a killed run left, plans tasks over the manifest rows not
finished yet (``--retry-failed``: also rerun the retryable statuses, or exactly the statuses
and error classes named), runs them on a local pool or Ray, and merges the task tables into
``W/fetch.parquet``. It keeps ``W/fetch/progress.json`` current (counts, and the yt-dlp
warnings each task table records) so ``fetch_status`` can report on a run in flight.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from valor_data.distribute import collect, finished, plan, read_results, run_tasks, stage_lock
from valor_data.distribute.tasks import latest, task_dir
from valor_data.errors import ConfigError, ValorError
from valor_data.fetch import identity
from valor_data.fetch import plan as fetch_plan
from valor_data.fetch.config import FetchConfig
from valor_data.fetch.identity import BlockedError
from valor_data.fetch.jsc import require_solver
from valor_data.fetch.outcome import (
    ERROR_CLASSES,
    OK,
    RETRYABLE,
    STATUSES,
    WARNINGS_KEY,
    DiskFullError,
    disk_full,
    is_disk_full,
    is_error_class,
)
from valor_data.fetch.scope import Scope
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
    identities: dict = field(default_factory=dict)      # per identity: resolves, waits, blocks (identity.counters)
    warnings: Counter = field(default_factory=Counter)   # yt-dlp warnings of this run, by short form

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
        if self.warnings:
            top = ", ".join(f"{key} ({count:,})" for key, count in self.warnings.most_common(3))
            out.append(f"yt-dlp warnings: {sum(self.warnings.values()):,}; most often: {top}")
        return out + identity.describe(self.identities)


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


def run_fetch(workdir: Workdir, cfg: FetchConfig, limit: int | None = None, retry_failed: bool | str = False,
              distributor: str = "local", ray_address: str | None = None, progress: bool = True,
              scope: Scope | None = None, preflight: bool = True) -> FetchSummary:
    """Fetch every unfinished clip of ``W/manifest.parquet`` in ``scope``; return the summary.

    ``preflight``: refuse YouTube clips when yt-dlp's JS challenge solver does not run here."""
    if not workdir.manifest.exists():
        raise ValorError(f"{workdir.manifest} does not exist: build the manifest first (valor-data manifest ...)")
    with stage_lock(workdir, STAGE):
        MediaStore(workdir, cfg.media_url).clean_stale()
        identity.reset(workdir, cfg)
        done = finished(workdir, STAGE, redo_filter(workdir, retry_failed))
        outside = scope.excluded(workdir.manifest) if scope is not None else set()
        if preflight:
            require_solver(workdir.manifest, done | outside, cfg)
        planned, total = _todo(workdir.manifest, done | outside, limit)
        cfg = fetch_plan.sized(cfg, *fetch_plan.left(workdir.manifest, done | outside, limit))
        summary = FetchSummary(planned=planned, manifest_clips=total - len(outside - done))
        tasks = plan(manifest_rows(workdir.manifest), STAGE, workdir, done | outside, cfg.task_size, limit)
        started = time.time()
        _progress(workdir, summary, started, "running")
        try:
            _drive(tasks, cfg, distributor, ray_address, summary, workdir, started, progress)
        except BlockedError as exc:       # every identity blocked for good: no clip recorded for it
            summary.identities = identity.counters(workdir, cfg)
            _finish(workdir, summary, started, "stopped", str(exc).splitlines()[0])
            raise BlockedError(str(exc).splitlines()[0]) from None
        except (DiskFullError, OSError) as exc:
            if not isinstance(exc, DiskFullError) and not is_disk_full(exc):
                raise
            cause = getattr(exc, "cause", None) or exc      # Ray wraps the worker's exception
            error = cause if isinstance(cause, DiskFullError) else disk_full(str(workdir.root))
            _finish(workdir, summary, started, "stopped", str(error).splitlines()[0])
            raise DiskFullError(str(error).splitlines()[0]) from None
        finally:
            identity.remove_copies(workdir)
        summary.identities = identity.counters(workdir, cfg)
        _finish(workdir, summary, started, "finished")
        MediaStore(workdir, cfg.media_url).clean_stale()   # also what a killed run's stragglers wrote late
    return summary


def plan_fetch(workdir: Workdir, cfg: FetchConfig, limit: int | None = None, retry_failed: bool | str = False,
               scope: Scope | None = None) -> list[str]:
    """What ``run_fetch`` with these arguments would do (``valor-data fetch --plan``), fetching nothing."""
    if not workdir.manifest.exists():
        raise ValorError(f"{workdir.manifest} does not exist: build the manifest first (valor-data manifest ...)")
    done = finished(workdir, STAGE, redo_filter(workdir, retry_failed))
    skip = done | (scope.excluded(workdir.manifest) if scope is not None else set())
    return fetch_plan.lines(workdir, cfg, skip, limit, _todo(workdir.manifest, skip, limit)[1])


def redo_filter(workdir: Workdir, retry_failed: bool | str) -> Callable[[dict], bool] | None:
    """Which finished clips ``--retry-failed`` runs again: none (False), the retryable statuses (True
    or "default"), or exactly the statuses and error classes named ("blocked,rate_limited", "NoFormats")."""
    if not retry_failed:
        return None
    default = retry_failed is True or retry_failed == "default"
    names = set(RETRYABLE) if default else {n.strip() for n in str(retry_failed).split(",") if n.strip()}
    statuses, classes = names & set(STATUSES), names - set(STATUSES)
    recorded = _recorded_classes(workdir) if classes else set()
    unknown = sorted(n for n in classes if not is_error_class(n) and n not in recorded)
    if unknown or OK in names or not names:
        raise ConfigError(
            f"--retry-failed: {'unknown ' + ', '.join(unknown) if unknown else 'nothing to rerun in ' + repr(retry_failed)}"
            f"; name statuses ({', '.join(s for s in STATUSES if s != OK)}) or error classes "
            f"({', '.join(sorted(set(ERROR_CLASSES) | recorded))}, HTTP<code>), comma-separated")
    return lambda r: r["status"] != OK and (r["status"] in statuses or r.get("error_class") in classes)


def _recorded_classes(workdir: Workdir) -> set[str]:
    """The error classes the fetch tables of ``workdir`` hold."""
    results = read_results(workdir, STAGE, columns=["error_class"])
    return {c for c in results.column("error_class").unique().to_pylist() if c} if results is not None else set()


def _task_warnings(workdir: Workdir, index: int) -> dict[str, int]:
    """The yt-dlp warnings a finished task's table records (its footer only)."""
    path = task_dir(workdir, STAGE) / f"task-{index:06d}.parquet"
    try:
        raw = (pq.read_schema(path).metadata or {}).get(WARNINGS_KEY)
    except OSError:
        return {}
    return json.loads(raw) if raw else {}


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
            summary.warnings.update(_task_warnings(workdir, result["index"]))
            summary.identities = identity.counters(workdir, cfg)
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
            "done": sum(summary.run.values()), "counts": dict(summary.run), "identities": summary.identities,
            "warnings": dict(summary.warnings.most_common())}
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
    warned = info.get("warnings") or {}
    if warned:
        lines.append(f"yt-dlp warnings this run: {sum(warned.values()):,}")
        lines += [f"  {count:>8,}  {key}" for key, count in list(warned.items())[:10]]
    return lines + identity.describe(info.get("identities") or {})
