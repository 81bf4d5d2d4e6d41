"""Worker functions for the distribute tests (importable by spawned processes and Ray)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa

from valor_data.distribute import Task


def square(task: Task, config: dict) -> pa.Table:
    """Square each row's value; clips listed in config['flaky'] fail transiently once."""
    flaky_marker = config.get("marker")
    rows = []
    for row in task.rows:
        status = "ok"
        if row["clip_id"] in config.get("flaky", ()) and flaky_marker and not os.path.exists(flaky_marker):
            status = "failed_transient"
        rows.append({"clip_id": row["clip_id"], "status": status, "value": row["value"] ** 2,
                     "pid": os.getpid()})
    return pa.Table.from_pylist(rows)


def where(task: Task, config: dict) -> pa.Table:
    """The process and the GPU ids (CUDA_VISIBLE_DEVICES) that ran each clip. A worker's first
    task waits until ``config['parties']`` workers have each started one (files in
    ``config['rendezvous']``), so every worker gets a task however fast the first one is."""
    folder = Path(config["rendezvous"])
    (folder / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(folder.iterdir())) < config["parties"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {config['parties']} workers started a task")
        time.sleep(0.05)
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    return pa.Table.from_pylist([{"clip_id": row["clip_id"], "status": "ok", "pid": os.getpid(), "gpu": gpu}
                                 for row in task.rows])
