import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from valor_data.distribute import collect, finished, plan, run_tasks, stage_lock
from valor_data.errors import ValorError
from valor_data.workdir import Workdir

from distribute_workers import square

ROWS = [{"clip_id": f"c{i:03d}", "value": i} for i in range(25)]


def _run(workdir, config, distributor="local", redo=None):
    done = finished(workdir, "demo", redo)
    tasks = list(plan(ROWS, "demo", workdir, done, task_size=4))
    summaries = list(run_tasks(square, tasks, config, distributor=distributor, workers=2))
    return tasks, summaries


def test_local_run_writes_one_table_per_task_and_collects(tmp_path):
    workdir = Workdir.create(tmp_path)
    tasks, summaries = _run(workdir, {})
    assert len(tasks) == 7 and sorted(s["index"] for s in summaries) == list(range(7))
    table = collect(workdir, "demo")
    assert sorted(table.column("clip_id").to_pylist()) == [r["clip_id"] for r in ROWS]
    assert sorted(table.column("value").to_pylist()) == sorted(i * i for i in range(25))
    assert len(set(table.column("pid").to_pylist())) >= 1
    assert os.getpid() not in table.column("pid").to_pylist()   # ran in worker processes
    # a rerun finds everything finished and plans nothing
    assert list(plan(ROWS, "demo", workdir, finished(workdir, "demo"), 4)) == []


def test_rerun_retries_only_what_redo_selects(tmp_path):
    workdir = Workdir.create(tmp_path)
    config = {"flaky": ["c003", "c017"], "marker": str(tmp_path / "recovered")}
    _run(workdir, config)
    first = collect(workdir, "demo").to_pylist()
    assert {r["clip_id"] for r in first if r["status"] != "ok"} == {"c003", "c017"}
    Path(config["marker"]).touch()
    tasks, _ = _run(workdir, config, redo=lambda r: r["status"] == "failed_transient")
    assert [r["clip_id"] for t in tasks for r in t.rows] == ["c003", "c017"]
    assert tasks[0].index == 7   # numbered after the existing tasks
    final = collect(workdir, "demo")
    assert final.num_rows == 25 and set(final.column("status").to_pylist()) == {"ok"}


def test_ray_runs_the_same_tasks(tmp_path):
    ray = pytest.importorskip("ray")
    workdir = Workdir.create(tmp_path)
    tests_dir = str(Path(__file__).parent)   # so Ray workers can import distribute_workers
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": tests_dir}})
    try:
        _, summaries = _run(workdir, {}, distributor="ray")
    finally:
        ray.shutdown()
    assert sum(s["clips"] for s in summaries) == 25
    assert collect(workdir, "demo").num_rows == 25


def _hold_lock(root: str, ready) -> None:
    with stage_lock(Workdir(Path(root)), "demo"):
        ready.set()
        time.sleep(60)


def test_stage_lock_refuses_a_second_run_and_survives_a_crash(tmp_path):
    workdir = Workdir.create(tmp_path)
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(ValorError, match="already using"):
            with stage_lock(workdir, "demo"):
                pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    with stage_lock(workdir, "demo"):   # the killed holder left no stuck lock
        pass
