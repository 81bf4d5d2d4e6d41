"""How many DataLoader workers, how far ahead, and whether to pin: defaults from the machine.

- workers per process: the cores this process may use, shared by the node's training processes
  (torchrun's ``LOCAL_WORLD_SIZE``: one per GPU), one left for the process itself, at most
  ``MAX_WORKERS`` (a pre-sampled ``base`` sample costs a few CPU ms, so 8 feed one GPU);
- prefetch: ``PREFETCH`` batches per worker;
- pinned memory: on when the model runs on CUDA (host-to-device copies overlap the step).

``TrainConfig`` fields ``workers``, ``prefetch`` and ``pin_memory`` override each.
"""

from __future__ import annotations

import os

MAX_WORKERS = 8
PREFETCH = 4


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(cores: int | None = None, local_procs: int | None = None) -> int:
    """Workers per training process: ``min(cores // processes per node - 1, MAX_WORKERS)``, at least 0."""
    cores = available_cores() if cores is None else cores
    procs = local_procs if local_procs is not None else int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(0, min(cores // max(1, procs) - 1, MAX_WORKERS))


def pin_memory(setting: bool | None, device_type: str) -> bool:
    """Pinned host memory: ``setting`` when given, else only when feeding a CUDA device."""
    return device_type == "cuda" if setting is None else setting
