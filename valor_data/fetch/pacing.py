"""A resolve budget per identity, shared by every thread, process and Ray worker of a work dir.

Each identity has a slot schedule, ``W/fetch/pacing/<name>.json``: ``next_at`` (epoch s), the
earliest start of its next resolve, plus counters. ``Pacer.take`` locks the file
(``fcntl.flock``), reserves ``max(now, next_at)`` and moves ``next_at`` one interval on, then
sleeps until its slot: resolves of one identity start at least ``interval_s`` apart, whoever
starts them, so no window of T seconds holds more than ``T / interval_s + 1``. The interval is
``max(min_gap_s, 3600 / videos_per_hour)``. Costs: one lock, one read and one write of a tiny
file per resolve, and a plain sleep (no polling).

Bounds: a taker waits at most for the takers queued before it (one slot each, so at most
threads x processes x interval); a schedule further ahead than ``max_wait_s`` (a clock jump, a
stale file) is reset to now, so no wait ever exceeds ``max_wait_s``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from valor_data.fetch.config import FetchConfig, IdentityConfig, YouTubeConfig

GUEST_PER_HOUR = 250.0        # yt-dlp's documentation: about 300 videos/hour for a guest session
ACCOUNT_PER_HOUR = 1500.0     # and about 2,000/hour for an account
CLIP_SECONDS = 20.0           # wall time of one clip (resolve + cut) when sizing concurrency
MAX_WAIT_S = 3600.0


@dataclass(frozen=True)
class Budget:
    """What one identity may do: videos per hour and the gap between two resolves."""

    videos_per_hour: float
    min_gap_s: float

    @property
    def interval_s(self) -> float:
        return max(self.min_gap_s, 3600.0 / self.videos_per_hour)

    @property
    def per_hour(self) -> float:
        return 3600.0 / self.interval_s if self.interval_s > 0 else math.inf


def budget(identity: IdentityConfig, yt: YouTubeConfig) -> Budget:
    """The identity's own budget, else the section's, else the default for a guest or an account."""
    default = ACCOUNT_PER_HOUR if identity.cookies_file else GUEST_PER_HOUR
    per_hour = identity.videos_per_hour or yt.videos_per_hour or default
    gap = identity.min_gap_s if identity.min_gap_s is not None else yt.min_gap_s
    return Budget(per_hour, gap)


def in_flight(budgets: list[Budget], cfg: FetchConfig) -> tuple[int, int]:
    """(workers, threads) that keep every budget busy: clips/s times a clip's wall time, spread over
    ``cfg.threads`` threads per worker, at most one worker per CPU (YouTube-only runs without
    ``--workers``)."""
    per_second = sum(b.per_hour for b in budgets) / 3600.0
    clips = max(1, math.ceil(per_second * CLIP_SECONDS) + len(budgets))
    workers = min(os.cpu_count() or 1, max(1, math.ceil(clips / cfg.threads)))
    return workers, cfg.threads


class Pacer:
    """The slot schedule of one identity (a file under ``W/fetch/pacing/``)."""

    def __init__(self, path: str | os.PathLike, interval_s: float, max_wait_s: float = MAX_WAIT_S):
        self.path = Path(path)
        self.interval_s, self.max_wait_s = interval_s, max_wait_s

    def take(self, sleep=time.sleep) -> float:
        """Reserve the next slot and sleep until it; return the slot (epoch s)."""
        with _Locked(self.path) as state:
            now = time.time()
            next_at = float(state.get("next_at", 0.0))
            slot = now if next_at > now + self.max_wait_s else max(now, next_at)
            wait = slot - now
            state.update(next_at=slot + self.interval_s, resolves=int(state.get("resolves", 0)) + 1,
                         wait_s=round(float(state.get("wait_s", 0.0)) + wait, 3))
        if wait > 0:
            sleep(wait)
        return slot

    def next_at(self) -> float:
        """When the next slot opens (epoch s; 0 when none was taken yet), read without the lock."""
        try:
            return float(json.loads(self.path.read_text()).get("next_at", 0.0))
        except (OSError, ValueError):
            return 0.0


class _Locked:
    """A small JSON file read, changed and written under an exclusive ``flock``."""

    def __init__(self, path: Path):
        self.path = path
        self.state: dict = {}

    def __enter__(self) -> dict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)   # held for microseconds: a read and a write
        try:
            raw = os.pread(self.fd, 1 << 16, 0)
            self.state = json.loads(raw) if raw.strip() else {}
        except ValueError:
            self.state = {}
        return self.state

    def __exit__(self, exc_type, *exc) -> None:
        try:
            if exc_type is None:
                data = json.dumps(self.state).encode()
                os.ftruncate(self.fd, 0)
                os.pwrite(self.fd, data, 0)
        finally:
            os.close(self.fd)   # closing releases the lock


def locked(path: str | os.PathLike) -> _Locked:
    """``with locked(path) as state: state[...] = ...``: a read-modify-write no other process interleaves."""
    return _Locked(Path(path))
