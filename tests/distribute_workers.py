"""Worker functions for the distribute tests (importable by spawned processes and Ray)."""

from __future__ import annotations

import os

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
