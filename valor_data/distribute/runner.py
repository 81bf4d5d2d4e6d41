"""Run tasks on a local process pool or a Ray cluster: the same task code on both.

A worker function has the signature ``fn(task, config) -> pyarrow.Table`` (one row per
clip of the task, with a ``status`` column). ``execute`` runs it and writes the table
atomically where the task says, so the driver only ever holds small summaries and a
bounded number of tasks in flight: memory stays flat however long the manifest.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

from valor_data.distribute.tasks import Task
from valor_data.errors import ConfigError
from valor_data.table import write_table

log = logging.getLogger(__name__)

Worker = Callable[[Task, Any], pa.Table]
DISTRIBUTORS = ("local", "ray")


def execute(fn: Worker, task: Task, config: Any) -> dict:
    """Run one task and write its result table; return a small summary for the driver."""
    table = fn(task, config)
    write_table(table, task.result_path)
    return {"index": task.index, "clips": table.num_rows,
            "status": dict(Counter(table.column("status").to_pylist()))}


def _die_with_parent() -> None:
    """Pool initializer: ask Linux to kill this worker when the driver dies (no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: orphans exit when their queue closes
        pass


def run_tasks(fn: Worker, tasks: Iterable[Task], config: Any, distributor: str = "local",
              workers: int = 0, ray_address: str | None = None, in_flight: int = 0) -> Iterator[dict]:
    """Run ``tasks`` and yield each one's summary as it finishes (in completion order)."""
    workers = workers or os.cpu_count() or 1
    in_flight = in_flight or 2 * workers
    if distributor == "local":
        yield from _run_local(fn, tasks, config, workers, in_flight)
    elif distributor == "ray":
        yield from _run_ray(fn, tasks, config, workers, ray_address, in_flight)
    else:
        raise ConfigError(f"unknown distributor {distributor!r}; use one of {DISTRIBUTORS}")


def _run_local(fn: Worker, tasks: Iterable[Task], config: Any, workers: int, in_flight: int) -> Iterator[dict]:
    context = multiprocessing.get_context("spawn")   # no fork of a threaded driver
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_die_with_parent) as pool:
        pending: set[cf.Future] = set()
        try:
            for task in tasks:
                pending.add(pool.submit(execute, fn, task, config))
                if len(pending) >= in_flight:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    yield from (f.result() for f in done)
            for future in cf.as_completed(pending):
                yield future.result()
        except BaseException:
            for future in pending:   # a failed task (a full disk, say) stops the run: start nothing more
                future.cancel()
            raise


def _run_ray(fn: Worker, tasks: Iterable[Task], config: Any, workers: int, address: str | None,
             in_flight: int) -> Iterator[dict]:
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(execute)
    pending: list = []
    for task in tasks:
        pending.append(remote.remote(fn, task, config))
        if len(pending) >= in_flight:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
