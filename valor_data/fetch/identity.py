"""YouTube identities: who resolves a clip (proxy, cookies, source address), at what pace, and
when to stop using one (the circuit breaker).

The pool comes from ``fetch.youtube.identities`` (without it: one identity, ``default``, from
``youtube.cookies_file`` and ``youtube.proxy``). Per process, each identity has:

- a private copy of its cookies file, ``W/fetch/identities/<host>-<pid>/<name>.txt``, and one
  cookie jar loaded from it that every thread's ``YoutubeDL`` shares. The jar never saves:
  yt-dlp never writes the user's file (nor the copy); the copies are removed when a run ends.
- a ``Pacer`` (``W/fetch/pacing/<name>.json``): its budget, across every process of the work dir.
- a ``Breaker`` (``W/fetch/identities/<name>.json``): ``block_threshold`` blocked failures in a
  row quarantine the identity for ``quarantine_s`` (doubling with each quarantine in a row); the
  ``max_quarantines``-th quarantine in a row takes it out of the run. A success resets both.
  A clip blocked ``blocked_retries`` times is recorded ``blocked`` only when other clips went
  through after its first block (the block is the clip's); otherwise it is taken for a session
  block: it keeps striking, and waits for the pool like every clip (so the last clips of a run,
  blocked alone, can stop it: rerun with more identities or later).

``IdentityPool.acquire`` hands out the usable identity whose next slot opens first; each
resolve then waits for its slot (``Identity.pace``, right before yt-dlp's first request).
While every identity is quarantined it sleeps until the first quarantine ends (at most
``quarantine_s * 2**(max_quarantines - 2)``); when every identity is out it raises
``BlockedError``: the task writes no table, so no clip is recorded because of the block
(the clips of that task that went through are fetched again by the rerun).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from valor_data.errors import ConfigError, ValorError
from valor_data.fetch.config import FetchConfig, IdentityConfig, YouTubeConfig
from valor_data.fetch.pacing import Budget, Pacer, budget, locked
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

_POOLS: dict[tuple, IdentityPool] = {}
_STANDALONE: dict[str, Identity] = {}
_POOLS_LOCK = threading.Lock()
_PAUSE_CHUNK_S = 30.0


class BlockedError(ValorError):
    """Every identity was blocked past its quarantines: the run stops, no clip is recorded for it."""


def load_identities(path: str | os.PathLike) -> list[dict]:
    """The identities of a YAML file (``--identities``): a list of mappings, or ``identities:`` holding one."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read identities from {path}: {exc}") from None
    if isinstance(data, dict) and "identities" in data:
        data = data["identities"]
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise ConfigError(f"{path}: want a YAML list of identities (mappings with name, proxy, cookies_file, ...)")
    return data


def specs(yt: YouTubeConfig) -> list[IdentityConfig]:
    """The configured identities, or the one made of ``youtube.cookies_file`` and ``youtube.proxy``."""
    return list(yt.identities) or [IdentityConfig("default", proxy=yt.proxy, cookies_file=yt.cookies_file)]


class Breaker:
    """One identity's blocked strikes and quarantines, shared through a file (read cheaply: a stat,
    and a read only when the file changed)."""

    def __init__(self, path: Path, yt: YouTubeConfig):
        self.path = path
        self.threshold, self.quarantine_s, self.max_quarantines = yt.block_threshold, yt.quarantine_s, yt.max_quarantines
        self._lock = threading.Lock()
        self._seen: tuple | None = None
        self._state: dict = {}

    def state(self) -> dict:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._seen, self._state = None, {}
                return {}
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if key != self._seen:
                try:
                    self._state, self._seen = json.loads(self.path.read_text() or "{}"), key
                except (OSError, ValueError):   # being rewritten: keep the last state
                    pass
            return dict(self._state)

    def strike(self, reason: str, name: str) -> None:
        """A blocked failure: count it; past the threshold, quarantine (or retire) the identity."""
        with locked(self.path) as state:
            now = time.time()
            state["blocked"] = state.get("blocked", 0) + 1
            state["last_error"] = reason[:200]
            if state.get("out") or state.get("until", 0.0) > now:
                return                       # already quarantined: clips in flight when it happened
            state["strikes"] = state.get("strikes", 0) + 1
            if state["strikes"] < self.threshold:
                return
            row = state.get("in_a_row", 0) + 1
            state.update(strikes=0, in_a_row=row, quarantines=state.get("quarantines", 0) + 1)
            if row >= self.max_quarantines:
                state["out"] = True
                log.warning("identity %s blocked %d times in a row again (%s): out of this run", name,
                            self.threshold, reason[:120])
            else:
                pause = self.quarantine_s * 2 ** (row - 1)
                state["until"] = now + pause
                log.warning("identity %s blocked %d times in a row (%s): quarantined %.1f s", name,
                            self.threshold, reason[:120], pause)

    def success(self) -> None:
        """A clip went through: count it and reset the strikes."""
        with locked(self.path) as state:
            state.update(ok=state.get("ok", 0) + 1, strikes=0, in_a_row=0)


@dataclass
class Identity:
    """One identity as this process uses it."""

    spec: IdentityConfig
    budget: Budget
    pacer: Pacer | None = None       # None outside a run (``standalone``)
    breaker: Breaker | None = None
    cookiefile: str | None = None    # the file yt-dlp is given (a private copy in a run)
    jar: object | None = None        # the YoutubeDLCookieJar every thread shares; it never saves
    in_flight: int = 0               # this process's clips using it now (IdentityPool.acquire/release)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def proxy(self) -> str | None:
        return self.spec.proxy

    @property
    def source_address(self) -> str | None:
        return self.spec.source_address

    def pace(self) -> None:
        """Wait for this identity's next resolve slot (called right before each yt-dlp resolve)."""
        if self.pacer:
            self.pacer.take()

    def usable(self, now: float) -> bool:
        state = self.breaker.state() if self.breaker else {}
        return not state.get("out") and state.get("until", 0.0) <= now


def read_only_jar(path: str):
    """A cookie jar loaded from ``path`` whose ``save`` does nothing (yt-dlp's ``close`` saves)."""
    from yt_dlp.cookies import YoutubeDLCookieJar

    class _ReadOnlyJar(YoutubeDLCookieJar):
        def save(self, *args, **kwargs) -> None:   # rotations stay in memory, never in a file
            return None

    jar = _ReadOnlyJar(path)
    try:
        jar.load()
    except (OSError, ValueError) as exc:   # http.cookiejar.LoadError is an OSError
        raise ConfigError(f"cookies file {path} cannot be read as a Netscape cookies.txt: {exc}") from None
    return jar


def _private_copy(source: str, copy: Path) -> Path:
    if not Path(source).is_file():
        raise ConfigError(f"cookies file {source} does not exist")
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, copy)
    os.chmod(copy, 0o600)
    return copy


def standalone(yt: YouTubeConfig) -> Identity:
    """The identity of a call outside a run (no work dir): ``youtube.proxy`` and a read-only jar of
    ``youtube.cookies_file``; no pacing, no breaker."""
    key = repr(yt)
    with _POOLS_LOCK:
        if key not in _STANDALONE:
            spec = specs(yt)[0]
            jar = read_only_jar(spec.cookies_file) if spec.cookies_file else None
            _STANDALONE[key] = Identity(spec, budget(spec, yt), cookiefile=spec.cookies_file, jar=jar)
        return _STANDALONE[key]


def _process_dir(workdir: Workdir) -> Path:
    return workdir.path("fetch", "identities", f"{socket.gethostname()}-{os.getpid()}")


class IdentityPool:
    """Every identity of a run, as one process uses them."""

    def __init__(self, workdir: Workdir, cfg: FetchConfig):
        yt = cfg.youtube
        self._lock = threading.Lock()
        self.identities: list[Identity] = []
        for spec in specs(yt):
            rate = budget(spec, yt)
            identity = Identity(spec, rate, Pacer(workdir.path("fetch", "pacing", f"{spec.name}.json"), rate.interval_s),
                                Breaker(workdir.path("fetch", "identities", f"{spec.name}.json"), yt))
            if spec.cookies_file:
                copy = _private_copy(spec.cookies_file, _process_dir(workdir) / f"{spec.name}.txt")
                identity.cookiefile, identity.jar = str(copy), read_only_jar(str(copy))
            self.identities.append(identity)

    def acquire(self, avoid: frozenset[str] = frozenset(), sleep=time.sleep) -> Identity:
        """The usable identity (not one of ``avoid`` when another is usable) whose next slot opens
        first, counting this process's clips already on it; ``release`` it after the clip."""
        while True:
            now = time.time()
            usable = [i for i in self.identities if i.usable(now)]
            if usable:
                preferred = [i for i in usable if i.name not in avoid] or usable
                with self._lock:
                    identity = min(preferred, key=lambda i: max(now, i.pacer.next_at())
                                   + i.in_flight * i.budget.interval_s)
                    identity.in_flight += 1
                return identity
            states = {i.name: i.breaker.state() for i in self.identities}
            live = [s.get("until", 0.0) for s in states.values() if not s.get("out")]
            if not live:
                raise BlockedError(_stop_message(states))
            pause = max(0.0, min(live) - now)
            log.warning("every identity is quarantined; pausing %.1f s", pause)
            sleep(min(pause, _PAUSE_CHUNK_S))

    def release(self, identity: Identity) -> None:
        with self._lock:
            identity.in_flight -= 1

    def blocked(self, identity: Identity, reason: str) -> None:
        identity.breaker.strike(reason, identity.name)

    def succeeded(self, identity: Identity) -> None:
        identity.breaker.success()

    def successes(self) -> int:
        """Clips that went through so far, every identity and process together."""
        return sum(i.breaker.state().get("ok", 0) for i in self.identities if i.breaker)


def _stop_message(states: dict[str, dict]) -> str:
    detail = "; ".join(f"{name}: {s.get('blocked', 0)} blocked, {s.get('quarantines', 0)} quarantines, last "
                       f"{s.get('last_error', '?')!r}" for name, s in states.items())
    return (f"YouTube is blocking every identity ({detail}). The run stopped; no clip was recorded because of "
            "the block. Wait some hours, or add identities (fetch.youtube.identities: other proxies/IPs or "
            "cookies), then rerun the same command.")


def pool(workdir: Workdir, cfg: FetchConfig) -> IdentityPool:
    """This process's pool for the run (one cookie jar per identity, shared by its threads)."""
    stamps = tuple((s.cookies_file, _mtime(s.cookies_file)) for s in specs(cfg.youtube))
    key = (str(workdir.root), repr(cfg.youtube), stamps)
    with _POOLS_LOCK:
        if key not in _POOLS:
            if len(_POOLS) >= 8:   # earlier runs' pools in a long-lived (Ray) worker
                _POOLS.clear()
            _POOLS[key] = IdentityPool(workdir, cfg)
        return _POOLS[key]


def _mtime(path: str | None) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def reset(workdir: Workdir, cfg: FetchConfig) -> None:
    """A new run: every cookies file readable (checked here, before any worker starts); fresh strikes,
    quarantines and counters; no private cookie copy left behind."""
    for spec in specs(cfg.youtube):
        if spec.cookies_file:
            if not Path(spec.cookies_file).is_file():
                raise ConfigError(f"identity {spec.name}: cookies file {spec.cookies_file} does not exist")
            read_only_jar(spec.cookies_file)
    for folder in ("identities", "pacing"):
        root = workdir.path("fetch", folder)
        if root.is_dir():
            for path in root.glob("*.json"):
                path.unlink(missing_ok=True)
    remove_copies(workdir)


def remove_copies(workdir: Workdir) -> None:
    """Remove every process's private cookie copies (the jars live on in memory)."""
    root = workdir.path("fetch", "identities")
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def counters(workdir: Workdir, cfg: FetchConfig) -> dict[str, dict]:
    """Per identity: resolves, seconds waited for slots, blocked strikes, quarantines, state."""
    out = {}
    for spec in specs(cfg.youtube):
        data = {}
        for folder in ("pacing", "identities"):
            try:
                data[folder] = json.loads(workdir.path("fetch", folder, f"{spec.name}.json").read_text() or "{}")
            except (OSError, ValueError):
                data[folder] = {}
        pace, breaker = data["pacing"], data["identities"]
        state = "out" if breaker.get("out") else "quarantined" if breaker.get("until", 0) > time.time() else "ok"
        out[spec.name] = {"resolves": pace.get("resolves", 0), "wait_s": round(pace.get("wait_s", 0.0), 1),
                          "ok": breaker.get("ok", 0), "blocked": breaker.get("blocked", 0), "quarantines": breaker.get("quarantines", 0),
                          "state": state, "per_hour": round(budget(spec, cfg.youtube).per_hour, 1)}
    return out


def describe(counters: dict[str, dict]) -> list[str]:
    """One line per identity of ``counters`` (as in ``progress.json``)."""
    return [f"identity {name}: {c['state']}, {c['resolves']:,} resolves ({c['per_hour']:,.0f}/h), "
            f"{c['wait_s']:,.0f} s waiting for slots, {c['ok']:,} ok, {c['blocked']:,} blocked, "
            f"{c['quarantines']:,} quarantines" for name, c in counters.items()]
