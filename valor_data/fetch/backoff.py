"""A rate-limit pause shared by every worker process: one small JSON file in ``W/fetch/``.

When any clip is rate limited, its worker writes ``{"until": <epoch s>, "strikes": n}``
(atomically); every worker reads it before each network request and sleeps until then.
Retry-After is honoured up to ``rate_limit_max_s`` (a server asking for 100,000 s gets the
cap); without it the pause doubles with each strike up to that cap, and the first success
resets the strikes. Lost updates between racing writers only shorten
or lengthen one pause a little; they never lose the pause itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from valor_data.workdir import atomic_path

log = logging.getLogger(__name__)


def capped_retry_after(retry_after: float | None, cap: float) -> float:
    """A server's Retry-After (seconds, None when absent) as a wait of at most ``cap`` seconds."""
    return min(max(retry_after or 0.0, 0.0), cap)


class SharedBackoff:
    """Read and extend the global pause (cheap: one stat per check, a read when it changed)."""

    def __init__(self, path: str | os.PathLike, wait_s: float, max_s: float):
        self.path = Path(path)
        self.wait_s, self.max_s = wait_s, max_s
        self._lock = threading.Lock()
        self._seen: tuple[float, int] | None = None
        self._state = {"until": 0.0, "strikes": 0}

    def state(self) -> dict:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                return {"until": 0.0, "strikes": 0}
            key = (st.st_mtime, st.st_size)
            if key != self._seen:
                try:
                    self._state = json.loads(self.path.read_text())
                    self._seen = key
                except (OSError, ValueError):   # replaced while reading: keep the last state
                    pass
            return dict(self._state)

    def wait(self, sleep=time.sleep) -> float:
        """Sleep until the shared pause is over, at most ``max_s`` in all (a file written with a
        longer pause does not hold a worker longer); return the seconds slept."""
        slept = 0.0
        while True:
            remaining = min(float(self.state().get("until", 0.0)) - time.time(), self.max_s - slept)
            if remaining <= 0:
                return slept
            chunk = min(remaining, 5.0)   # re-read: another worker may extend the pause
            sleep(chunk)
            slept += chunk

    def hit(self, retry_after: float | None, reason: str) -> float:
        """Record a rate limit; return the pause (seconds) now in force."""
        state = self.state()
        strikes = int(state.get("strikes", 0)) + 1
        pause = min(self.max_s, retry_after if retry_after is not None else self.wait_s * 2 ** (strikes - 1))
        until = max(float(state.get("until", 0.0)), time.time() + pause)
        self._write({"until": until, "strikes": strikes, "reason": reason[:200], "pid": os.getpid()})
        log.warning("rate limited (%s): every worker pauses %.1f s", reason[:80], until - time.time())
        return until - time.time()

    def success(self) -> None:
        """A request went through: reset the strike count (only writes when there were strikes)."""
        state = self.state()
        if int(state.get("strikes", 0)):
            self._write({**state, "strikes": 0})

    def _write(self, state: dict) -> None:
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(state))
        with self._lock:
            self._state, self._seen = state, None
