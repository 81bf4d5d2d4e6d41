"""Run tasks on a local process pool, a Ray cluster or torchrun's ranks: the same task code on each.

A worker function has the signature ``fn(task, config) -> pyarrow.Table`` (one row per
clip of the task, with a ``status`` column). ``execute`` runs it and writes the table
atomically where the task says, so the driver only ever holds small summaries and a
bounded number of tasks in flight: memory stays flat however long the manifest.

GPUs (``gpus`` per worker > 0): the local pool pins each worker to one of ``gpu_ids``
(``CUDA_VISIBLE_DEVICES``, round-robin, set before the worker touches CUDA); Ray runs the
tasks on ``workers`` long-lived actors that each hold ``gpus`` GPUs (a model loaded once
stays loaded); under torchrun every rank is one process on its own GPU and runs the tasks
whose index is its rank modulo the world size.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime
import hashlib
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from valor_data.distribute.tasks import Task
from valor_data.errors import ConfigError
from valor_data.table import write_table

log = logging.getLogger(__name__)

Worker = Callable[[Task, Any], pa.Table]
DISTRIBUTORS = ("local", "ray", "torchrun")


def execute(fn: Worker, task: Task, config: Any) -> dict:
    """Run one task and write its result table; return a small summary for the driver."""
    table = fn(task, config)
    write_table(table, task.result_path)
    return {"index": task.index, "clips": table.num_rows,
            "status": dict(Counter(table.column("status").to_pylist()))}


def _die_with_parent() -> None:
    """Ask Linux to kill this pool worker when the driver dies (no orphans)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: orphans exit when their queue closes
        pass


def _start_worker(counter, gpu_ids: Sequence[str]) -> None:
    """Pool initializer: die with the driver; with ``gpu_ids``, see only the next one of them
    (worker i gets ``gpu_ids[i % len]``; torch reads the variable when it first touches CUDA)."""
    _die_with_parent()
    if gpu_ids:
        with counter.get_lock():
            index, counter.value = counter.value, counter.value + 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_ids[index % len(gpu_ids)]


def torchrun_rank(distributor: str) -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless ``distributor`` is torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if distributor != "torchrun":
        if world > 1:
            raise ConfigError(f"started by torchrun (WORLD_SIZE={world}): pass --distributor torchrun")
        return 0, 1
    if "WORLD_SIZE" not in os.environ:
        raise ConfigError("--distributor torchrun needs torchrun's environment (WORLD_SIZE is not set): "
                          "start it as torchrun --nproc_per_node N $(which valor-data) ...")
    return int(os.environ.get("RANK", "0")), world


def run_tasks(fn: Worker, tasks: Iterable[Task], config: Any, distributor: str = "local",
              workers: int = 0, ray_address: str | None = None, in_flight: int = 0, gpus: float = 0,
              gpu_ids: Sequence[str] = (), rank_timeout_s: float = 1800.0) -> Iterator[dict]:
    """Run ``tasks`` and yield each one's summary as it finishes (in completion order; under
    torchrun this rank's as they finish, then the other ranks').

    ``gpus``: GPUs per worker (fractions share a GPU on Ray); ``gpu_ids``: the GPUs the local
    pool pins its workers to; ``rank_timeout_s``: the longest a torchrun rank waits for the
    others at a barrier (the slowest rank's share of the tasks included)."""
    workers = workers or os.cpu_count() or 1
    in_flight = in_flight or 2 * workers
    if gpus < 0:
        raise ConfigError(f"GPUs per worker must be at least 0, not {gpus}")
    if distributor == "local":
        if gpus and not gpu_ids:
            raise ConfigError("workers should each use a GPU, but no GPU is visible (CUDA_VISIBLE_DEVICES, "
                              "torch.cuda.device_count()): pass --gpus-per-worker 0 to place them on the CPU")
        yield from _run_local(fn, tasks, config, workers, in_flight, tuple(gpu_ids) if gpus else ())
    elif distributor == "ray" and gpus:
        yield from _run_ray_actors(fn, tasks, config, workers, ray_address, in_flight, gpus)
    elif distributor == "ray":
        yield from _run_ray(fn, tasks, config, workers, ray_address, in_flight)
    elif distributor == "torchrun":
        yield from _run_torchrun(fn, tasks, config, rank_timeout_s)
    else:
        raise ConfigError(f"unknown distributor {distributor!r}; use one of {DISTRIBUTORS}")


def _run_local(fn: Worker, tasks: Iterable[Task], config: Any, workers: int, in_flight: int,
               gpu_ids: tuple[str, ...]) -> Iterator[dict]:
    context = multiprocessing.get_context("spawn")   # no fork of a threaded driver
    counter = context.Value("i", 0)
    with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                initargs=(counter, gpu_ids)) as pool:
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


def _init_ray(workers: int, address: str | None) -> None:
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)


def _run_ray(fn: Worker, tasks: Iterable[Task], config: Any, workers: int, address: str | None,
             in_flight: int) -> Iterator[dict]:
    import ray

    _init_ray(workers, address)
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


class TaskActor:
    """A Ray actor that runs tasks of one worker function (what it loads, a model, stays loaded)."""

    def __init__(self, fn: Worker, config: Any):
        self.fn, self.config = fn, config

    def run(self, task: Task) -> dict:
        return execute(self.fn, task, self.config)


def _run_ray_actors(fn: Worker, tasks: Iterable[Task], config: Any, workers: int, address: str | None,
                    in_flight: int, gpus: float) -> Iterator[dict]:
    """``workers`` actors with ``gpus`` GPUs each (Ray sets their CUDA_VISIBLE_DEVICES); a dead
    actor is restarted and its task run again (a task rewrites its one result table)."""
    import ray
    from ray.util import ActorPool

    _init_ray(workers, address)
    actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=3, max_task_retries=3)(TaskActor)
    actors = [actor.remote(fn, config) for _ in range(workers)]
    pool = ActorPool(actors)
    try:
        submitted = 0
        for task in tasks:
            pool.submit(lambda a, t: a.run.remote(t), task)
            submitted += 1
            if submitted >= in_flight:
                yield pool.get_next_unordered()
                submitted -= 1
        while pool.has_next():
            yield pool.get_next_unordered()
    finally:
        for handle in actors:   # free their GPUs now, not when the driver exits
            ray.kill(handle)


def _plan_digest(tasks: list[Task]) -> str:
    listing = repr([(t.index, [row["clip_id"] for row in t.rows]) for t in tasks])
    return hashlib.sha256(listing.encode()).hexdigest()


def _run_torchrun(fn: Worker, tasks: Iterable[Task], config: Any, timeout_s: float) -> Iterator[dict]:
    """This rank's share (task index modulo the world size), run in this process, then the other
    ranks' summaries: every rank yields every task's. Every rank plans the same tasks; they compare
    plans (which also waits until every rank has read the existing results) before any rank writes
    one, and exchange summaries once every task is written. A gloo group on the CPU: the
    collectives carry only small objects, whatever device the model is on."""
    import torch.distributed as dist

    rank, world = torchrun_rank("torchrun")
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    try:
        planned = list(tasks)
        digests: list = [None] * world
        dist.all_gather_object(digests, _plan_digest(planned))
        if len(set(digests)) > 1:
            raise ConfigError("torchrun ranks planned different tasks: every rank must see the same work dir "
                              "(a shared filesystem across nodes)")
        mine = []
        for task in planned:
            if task.index % world == rank:
                mine.append(execute(fn, task, config))
                yield mine[-1]
        everyone: list = [None] * world
        dist.all_gather_object(everyone, mine)   # every task's table is written
        for other, summaries in enumerate(everyone):
            if other != rank:
                yield from summaries
        dist.barrier()   # no rank leaves the group while another still talks in it
    finally:
        if owned:
            dist.destroy_process_group()
