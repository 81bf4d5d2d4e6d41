"""The fetch task: a few clips, a few threads, one result row per clip.

``fetch_task(task, config)`` is the worker function ``distribute.run_tasks`` runs in a
pool process or a Ray worker. Threads overlap the network waits; each clip's work is
an ffmpeg subprocess, so the CPU work runs in parallel processes. A clip is retried
within its budget (transient: exponential backoff with jitter; rate limited: the
shared pause), then recorded. YouTube clips are resolved as one of the run's identities
(``identity``), each paced by its budget; a blocked try strikes that identity and is retried
on another. A full disk raises ``DiskFullError``, and every identity blocked for good raises
``BlockedError``: the task writes no table, so no clip is marked failed.
"""

from __future__ import annotations

import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import pyarrow as pa

from valor_data.distribute import Task
from valor_data.errors import UnsafePathError
from valor_data.fetch import http, identity, youtube
from valor_data.fetch.backoff import SharedBackoff, capped_retry_after
from valor_data.fetch.config import FetchConfig
from valor_data.fetch.identity import IdentityPool
from valor_data.fetch.normalize import Normalized, Source, check_segment, normalize
from valor_data.fetch.outcome import (
    BLOCKED,
    FETCH_SCHEMA,
    OK,
    RATE_LIMITED,
    TRANSIENT,
    WARNINGS_KEY,
    FetchFailure,
    disk_full,
    is_disk_full,
    permanent,
    retry_delay,
)
from valor_data.fetch.store import MediaStore
from valor_data.ids import check_clip_id
from valor_data.workdir import Workdir

log = logging.getLogger(__name__)

YOUTUBE_HOSTS = ("youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be", "music.youtube.com")


@dataclass
class Env:
    """What every clip of a task shares."""

    cfg: FetchConfig
    store: MediaStore
    backoff: SharedBackoff
    identities: IdentityPool    # who resolves YouTube clips, at what pace (this process's, shared by tasks)


def make_env(workdir: Workdir, cfg: FetchConfig) -> Env:
    backoff = SharedBackoff(workdir.path("fetch", "backoff.json"), cfg.rate_limit_wait_s, cfg.rate_limit_max_s)
    return Env(cfg, MediaStore(workdir, cfg.media_url), backoff, identity.pool(workdir, cfg))


def fetch_task(task: Task, config: FetchConfig) -> pa.Table:
    """Fetch every clip of ``task``; return one FETCH_SCHEMA row per clip, in task order."""
    env = make_env(Workdir(Path(task.workdir)), config)
    warned = youtube.warning_counts()
    with ThreadPoolExecutor(config.threads, thread_name_prefix="fetch") as pool:
        futures = [pool.submit(fetch_clip, row, env) for row in task.rows]
        try:
            rows = [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    table = pa.Table.from_pylist(rows, schema=FETCH_SCHEMA)   # with what yt-dlp warned of meanwhile
    return table.replace_schema_metadata({WARNINGS_KEY: json.dumps(youtube.warnings_since(warned)).encode()})


def fetch_clip(row: dict, env: Env) -> dict:
    """Fetch one clip with retries; return its result row (never raises, except for a full disk and
    ``BlockedError``). A blocked try is retried on another identity; after ``youtube.blocked_retries``
    of them the clip is recorded ``blocked`` only if other clips went through meanwhile."""
    started, attempts, limited, blocked = time.monotonic(), 0, 0, 0
    trace: dict = {}
    while True:
        attempts += 1
        env.backoff.wait()
        try:
            done = _attempt(row, env, trace)
        except FetchFailure as failure:
            if failure.status == RATE_LIMITED and limited < env.cfg.rate_limit_retries:
                limited += 1
                env.backoff.hit(failure.retry_after, str(failure))
                continue
            if failure.status == BLOCKED:   # as an identity: retried until the block is the clip's or the pool stops
                first = trace.setdefault("ok_at_block", env.identities.successes())
                pooled = bool(trace.get("blocked_by"))
                if blocked < env.cfg.youtube.blocked_retries or (pooled and env.identities.successes() <= first):
                    blocked += 1
                    continue
            tries = attempts - limited - blocked
            if failure.status == TRANSIENT and tries <= env.cfg.retries:
                delay = max(capped_retry_after(failure.retry_after, env.cfg.backoff_max_s),
                            retry_delay(tries, env.cfg.backoff_s, env.cfg.backoff_max_s))
                log.info("%s: %s; retrying in %.1f s", row["clip_id"], failure, delay)
                time.sleep(delay)
                continue
            if failure.status == RATE_LIMITED:
                env.backoff.hit(failure.retry_after, str(failure))
            return _row(row, failure.status, attempts, started, trace, failure=failure)
        env.backoff.success()
        return _row(row, OK, attempts, started, trace, done=done)


def _row(row: dict, status: str, attempts: int, started: float, trace: dict,
         failure: FetchFailure | None = None, done: Normalized | None = None) -> dict:
    out = {"clip_id": row["clip_id"], "status": status, "attempts": attempts,
           "seconds": round(time.monotonic() - started, 3), "method": trace.get("method"),
           "formats": trace.get("formats"), "client": trace.get("client"), "bytes": 0}
    if failure is not None:
        out.update(error_class=failure.error_class, error=str(failure))
    if done is not None:
        out.update(bytes=done.bytes, duration_s=round(done.duration_s, 4), source_duration_s=done.source_duration_s,
                   has_video=done.has_video, has_audio=done.has_audio, width=done.width, height=done.height,
                   source_bits_per_pixel=done.source_bits_per_pixel, source_decode_errors=done.source_decode_errors)
    return out


def _attempt(row: dict, env: Env, trace: dict) -> Normalized:
    """One try: write both temps, check them, publish both; temps never outlive the try, and a
    failed try leaves no media of the clip (not even what a killed run published)."""
    try:
        clip_id = check_clip_id(row["clip_id"])
    except UnsafePathError as exc:
        raise permanent("BadClipId", str(exc)) from None
    try:
        return _write(row, env, clip_id, trace)
    except FetchFailure:
        env.store.discard(clip_id)
        raise


def _write(row: dict, env: Env, clip_id: str, trace: dict) -> Normalized:
    if not _is_local_path(row):        # a local path may hold spaces; it is never sent anywhere
        http.check_url(row.get("url") or "")
    fetch = _handler(row, env.cfg)
    mp4, flac = env.store.temp(clip_id, "mp4"), env.store.temp(clip_id, "flac")
    try:
        done = fetch(row, env, mp4, flac, trace)
        env.store.publish(clip_id, {"flac": flac if done.has_audio else None, "mp4": mp4})
        return done
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(str(env.store.workdir.root)) from None
        raise
    finally:
        for tmp in (mp4, flac):
            tmp.unlink(missing_ok=True)


def _handler(row: dict, cfg: FetchConfig):
    """The fetch function for a row's URL (checked: http(s), or file when enabled)."""
    url = row.get("url") or ""
    if _is_local_path(row):
        return _fetch_file
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not cfg.allow_file_urls:
            raise permanent("FileUrlRefused", "file:// URLs are off (set fetch.allow_file_urls: true)")
        return _fetch_file
    if scheme not in ("http", "https") or not parts.netloc:
        raise permanent("BadUrl", f"need an http(s) URL, got {url[:80]!r}")
    if row.get("source") == "audioset" or (parts.hostname or "") in YOUTUBE_HOSTS:
        return _fetch_youtube
    return _fetch_http


def _fetch_youtube(row: dict, env: Env, mp4: Path, flac: Path, trace: dict) -> Normalized:
    """Resolve (each resolve within the identity's budget) and cut as an identity; a blocked try
    strikes the identity and the next try avoids it."""
    avoid = trace.setdefault("blocked_by", set())
    who = env.identities.acquire(frozenset(avoid))
    if env.cfg.youtube.sleep_s:
        time.sleep(env.cfg.youtube.sleep_s * random.uniform(1.0, 1.5))
    try:
        done = youtube.fetch_youtube(row["url"], row.get("start_s"), row.get("end_s"), mp4, flac, env.cfg,
                                     env.store.staging, trace, identity=who)
    except FetchFailure as failure:
        if failure.status == BLOCKED:
            avoid.add(who.name)
            env.identities.blocked(who, str(failure))
        raise
    finally:
        env.identities.release(who)
    env.identities.succeeded(who)
    return done


def _fetch_http(row: dict, env: Env, mp4: Path, flac: Path, trace: dict) -> Normalized:
    """A segment is cut straight from the URL; a whole file, any file with a checksum (which
    covers the whole file), or a file on a server that ignores Range, is downloaded (resumably),
    verified, then normalised. A cut first asks for the first KiB (``http.preflight``, at most
    ``timeout_s``), so a silent server, a page or a lying size fails before ffmpeg starts; ffmpeg
    then runs at most ``clip_timeout_s``. A download is bounded as ``http`` says."""
    url, start, end = row["url"], row.get("start_s"), row.get("end_s")
    check_segment(start, end)
    if env.cfg.http.cut_from_url and (start is not None or end is not None) and not row.get("checksum"):
        if http.preflight(url, env.cfg):   # a bad URL fails here, within timeout_s, before ffmpeg
            trace.update(method="cut", formats="url")
            source = Source(url, headers=(("User-Agent", env.cfg.http.user_agent),))
            try:
                return normalize([source], start, end, mp4, flac, env.cfg)
            except FetchFailure as failure:
                if failure.error_class in ("ShortOutput", "Timeout"):
                    raise
                raise (http.diagnose(url, env.cfg) or failure) from None
        log.info("%s: the server ignores Range (ffmpeg cannot seek in it): downloading", row["clip_id"])
    trace.update(method="download", formats="file")
    part = env.store.downloads / f"{row['clip_id']}.part"
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        http.download(url, part, env.cfg)
        if row.get("checksum"):
            http.verify_checksum(part, row["checksum"], url)
        result = normalize([Source(str(part))], start, end, mp4, flac, env.cfg)
    except FetchFailure as failure:   # keep a partial download only for a transient failure's retry
        if failure.status != TRANSIENT:
            part.unlink(missing_ok=True)
        raise
    part.unlink(missing_ok=True)
    return result


def _is_local_path(row: dict) -> bool:
    """A Youku-mPLUG row whose ``url`` is a plain absolute path: what a local ``--base-url``
    directory gives (``:FILE`` values are relative, so the path lies under that directory), read
    without allow_file_urls. A plain path in any other row stays a BadUrl."""
    return row.get("source") == "youku" and (row.get("url") or "").startswith("/")


def _fetch_file(row: dict, env: Env, mp4: Path, flac: Path, trace: dict) -> Normalized:
    parts = urlsplit(row["url"])
    if not _is_local_path(row) and parts.netloc not in ("", "localhost"):
        raise permanent("BadUrl", f"file URL with a remote host: {row['url'][:80]!r}")
    path = Path(row["url"]) if _is_local_path(row) else Path(url2pathname(parts.path))
    if not path.is_file():
        raise permanent("FileNotFound", f"no such file: {path}")
    trace.update(method="file", formats=path.suffix.lstrip(".") or "file")
    if row.get("checksum"):
        http.verify_checksum(path, row["checksum"], row["url"])
    return normalize([Source(str(path))], row.get("start_s"), row.get("end_s"), mp4, flac, env.cfg)
