"""Direct http(s) media: whole-file downloads with Range resume, checksums, and a short probe.

``download`` streams a file to a partial file in ``W/fetch/downloads``; a retry resumes
it with ``Range: bytes=<have>-``. The status code, Content-Type and Content-Length are
checked, so an error page or a truncated body is a failure, never a clip. ``verify_checksum``
compares a finished file with the digest its manifest row carries (``<algo>:<hex>``). ``preflight``
asks for the first KiB of a URL before ffmpeg reads it (is it media, not too large, does the server
honour Range); ``diagnose`` asks the same after ffmpeg could not read it, to say precisely why.

Every wait is bounded by a watchdog that shuts the request's sockets down (the socket timeout
alone does not bound a server that trickles): the response headers must arrive within
``timeout_s`` of the start; after them each window of ``timeout_s`` must carry at least
``http.min_rate_bytes_s`` per second, and a window without a finished read ends the transfer at
twice ``timeout_s``; so a trickling server costs at most 3 x ``timeout_s``, and one download at
most ``http.download_timeout_s`` however fast it is. Both end as a transient ``TooSlow``/``Timeout``
whose partial file is kept for the resume.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from valor_data.fetch.config import FetchConfig
from valor_data.fetch.outcome import (
    FetchFailure,
    disk_full,
    from_http_status,
    is_disk_full,
    parse_retry_after,
    permanent,
    transient,
)
from valor_data.table import CHECKSUM_HEX

log = logging.getLogger(__name__)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_HTML_START = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")
_FFCONCAT = b"ffconcat version"


class _Watchdog:
    """Shuts a request's sockets down at a deadline, so that no read outlives it."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self.expired = False
        self.extend(seconds)

    def extend(self, seconds: float) -> None:
        """Move the deadline to ``seconds`` from now."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if not self.expired:
                self._timer = threading.Timer(max(0.0, seconds), self._fire)
                self._timer.daemon = True
                self._timer.start()

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shut(sock)
        return sock

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self) -> _Watchdog:
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    """Shut the descriptor down (a blocked recv returns at once); the owner still closes it."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)   # on the descriptor, also under TLS
    except OSError:
        pass


class _Watched:
    """A connection whose sockets (the TCP one, then the TLS one) its watchdog can shut."""

    def __init__(self, *args, watchdog: _Watchdog, **kwargs):
        super().__init__(*args, **kwargs)
        self._watchdog = watchdog
        create = self._create_connection
        self._create_connection = lambda *a, **k: watchdog.watch(create(*a, **k))

    def connect(self) -> None:
        super().connect()
        self._watchdog.watch(self.sock)


class _WatchedHTTP(_Watched, http.client.HTTPConnection):
    pass


class _WatchedHTTPS(_Watched, http.client.HTTPSConnection):
    pass


class _HttpHandler(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog, source_address: str | None = None):
        super().__init__()
        self._watchdog, self._bind = watchdog, (source_address, 0) if source_address else None

    def http_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTP, watchdog=self._watchdog, source_address=self._bind), req)


class _HttpsHandler(urllib.request.HTTPSHandler):
    def __init__(self, watchdog: _Watchdog, source_address: str | None = None):
        super().__init__()
        self._watchdog, self._bind = watchdog, (source_address, 0) if source_address else None

    def https_open(self, req):
        return self.do_open(functools.partial(_WatchedHTTPS, watchdog=self._watchdog, source_address=self._bind), req)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (never to ftp or file)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.HTTPError(newurl, 403, f"refusing redirect to {newurl[:80]}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_url(url: str) -> None:
    """Raise a permanent ``BadUrl`` for a URL with whitespace or control characters (no request
    can carry it: it would be retried as a network error)."""
    bad = next((c for c in url if c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F), None)
    if bad is not None:
        raise permanent("BadUrl", f"the URL holds the character {bad!r} at {url.index(bad)}: {url[:80]!r}")


def _open(url: str, cfg: FetchConfig, watchdog: _Watchdog, headers: dict[str, str] | None = None,
          proxy: str | None = None, source_address: str | None = None):
    """The response to a GET of ``url`` (its headers read; through ``proxy``, from ``source_address``
    when given), or a FetchFailure."""
    if not url.lower().startswith(("http://", "https://")):
        raise permanent("BadUrl", f"not an http(s) URL: {url[:80]}")
    check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": cfg.http.user_agent, **(headers or {})})
    opener = urllib.request.build_opener(_HttpOnlyRedirects(), _HttpHandler(watchdog, source_address),
                                         _HttpsHandler(watchdog, source_address),
                                         *([urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []))
    try:
        return opener.open(request, timeout=cfg.timeout_s)
    except urllib.error.HTTPError as exc:
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        if exc.code == 416:
            return exc   # the caller reads Content-Range
        raise from_http_status(exc.code, f"HTTP {exc.code} {exc.reason} for {url[:120]}", retry_after) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        if watchdog.expired:
            raise transient("Timeout", f"no complete response within {cfg.timeout_s:g} s from {url[:120]}") from None
        raise _network(exc, url) from None


def _network(exc: BaseException, url: str) -> FetchFailure:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return transient("Timeout", f"timed out reading {url[:120]}")
    return transient("Network", f"{type(reason).__name__}: {reason} ({url[:120]})")


def _is_html(content_type: str | None, head: bytes) -> bool:
    return "html" in (content_type or "").lower() or head.lstrip()[:9].lower().startswith(_HTML_START)


def _not_media(content_type: str | None, head: bytes, url: str) -> FetchFailure | None:
    """A permanent failure when the first bytes are a web page or an ffmpeg script, not media."""
    if _is_html(content_type, head):
        return permanent("HtmlPage", f"the server sent an HTML page, not media: {url[:120]}")
    if head.lstrip().startswith(_FFCONCAT):   # ffmpeg would follow the script to other files
        return permanent("NotMedia", f"the server sent an ffconcat script, not media: {url[:120]}")
    return None


def preflight(url: str, cfg: FetchConfig, headers: dict[str, str] | None = None, proxy: str | None = None,
              source_address: str | None = None) -> bool:
    """Ask for the first KiB of ``url`` (within ``timeout_s``); raise the precise FetchFailure
    when it is not media that ffmpeg could read (an HTTP error, a page, an empty or too large file);
    return whether the server honoured the Range (whether ffmpeg can seek in the URL)."""
    with _Watchdog(cfg.timeout_s) as watchdog:
        response = _open(url, cfg, watchdog, {**(headers or {}), "Range": "bytes=0-1023"}, proxy, source_address)
        with response:
            if response.status == 416:
                if (response.headers.get("Content-Range") or "").endswith("/0"):
                    raise permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
                raise permanent("HTTP416", f"HTTP 416 for the first bytes of {url[:120]}")
            total = _declared_total(response)
            if total is not None and total > cfg.http.max_bytes:
                raise _too_large(total, cfg)
            try:
                head = response.read(1024)
            except (http.client.HTTPException, OSError) as exc:
                if watchdog.expired:
                    raise transient("Timeout", f"the first KiB took over {cfg.timeout_s:g} s: {url[:120]}") from None
                raise _network(exc, url) from None
    if not head:
        raise permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
    failure = _not_media(response.headers.get("Content-Type"), head, url)
    if failure is not None:
        raise failure
    return response.status == 206


def diagnose(url: str, cfg: FetchConfig, headers: dict[str, str] | None = None,
             proxy: str | None = None, source_address: str | None = None) -> FetchFailure | None:
    """Why ffmpeg could not read ``url`` (asked through ``proxy``, from ``source_address``, as ffmpeg
    read it): a precise
    failure, or None when the URL looks like media (its size is no reason: a long stream may be
    larger than ``http.max_bytes``)."""
    try:
        preflight(url, cfg, headers, proxy, source_address)
    except FetchFailure as failure:
        return None if failure.error_class == "TooLarge" else failure
    return None


def _declared_total(response) -> int | None:
    """The full size from Content-Range (206) or Content-Length (200)."""
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range") or "")
    if response.status == 206:
        return int(match.group(3)) if match and match.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _too_large(total: int, cfg: FetchConfig) -> FetchFailure:
    return permanent("TooLarge", f"{total:,} bytes is more than http.max_bytes ({cfg.http.max_bytes:,})")


def download(url: str, dest: Path, cfg: FetchConfig) -> int:
    """Download ``url`` to ``dest`` (resuming a partial ``dest``); return its size in bytes.
    Bounded as the module says; the bytes received are kept in ``dest`` whatever happens."""
    have = dest.stat().st_size if dest.exists() else 0
    with _Watchdog(cfg.timeout_s) as watchdog:
        started = time.monotonic()
        response = _open(url, cfg, watchdog, {"Range": f"bytes={have}-"} if have else None)
        with response:
            total = _expected_total(response, have, url)
            if response.status == 416:
                return have        # already complete (checked by _expected_total)
            if response.status == 200 and have:
                have = 0           # the server ignored Range: start again
            if total is not None and total > cfg.http.max_bytes:
                raise _too_large(total, cfg)
            have = _copy(response, dest, have, cfg, url, watchdog, started)
    if total is not None and have < total:
        raise transient("Truncated", f"got {have:,} of {total:,} bytes from {url[:120]}")
    if have == 0:
        raise permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
    with open(dest, "rb") as fh:
        failure = _not_media(None, fh.read(1024), url)
    if failure is not None:
        raise failure
    return have


def _expected_total(response, have: int, url: str) -> int | None:
    """The full size of the file from Content-Range / Content-Length; checks the response type."""
    content_range = response.headers.get("Content-Range") or ""
    if response.status == 416:
        total = content_range.rsplit("/", 1)[-1]
        if total.isdigit() and int(total) == have:
            return have
        raise transient("HTTP416", f"HTTP 416 resuming at byte {have:,} of {url[:120]}")
    if _is_html(response.headers.get("Content-Type"), b""):
        raise permanent("HtmlPage", f"the server sent an HTML page, not media: {url[:120]}")
    if response.status == 206:
        match = _CONTENT_RANGE.match(content_range)
        if not match or int(match.group(1)) != have:
            raise transient("BadRange", f"unexpected Content-Range {content_range!r} resuming {url[:120]}")
    return _declared_total(response)


def _copy(response, dest: Path, have: int, cfg: FetchConfig, url: str, watchdog: _Watchdog,
          started: float) -> int:
    """Append the body to ``dest`` (each read returns what arrived); return the bytes in ``dest``."""
    window, rate = cfg.timeout_s, cfg.http.min_rate_bytes_s
    deadline = started + cfg.http.download_timeout_s
    mark, marked = time.monotonic(), have
    watchdog.extend(min(2 * window, deadline - mark))
    try:
        with open(dest, "ab" if have else "wb") as out:
            while True:
                try:
                    chunk = response.read1(cfg.http.chunk_bytes)
                except (http.client.HTTPException, OSError) as exc:
                    log.debug("download of %s broke off at %d bytes: %s", url, have, exc)
                    chunk = b""
                out.write(chunk)
                have += len(chunk)
                if watchdog.expired or not chunk:
                    break
                if have > cfg.http.max_bytes:
                    raise permanent("TooLarge", f"more than http.max_bytes ({cfg.http.max_bytes:,}) bytes")
                now = time.monotonic()
                if now - mark >= window:
                    if have - marked < rate * (now - mark):
                        raise _too_slow(have - marked, now - mark, cfg, url)
                    mark, marked = now, have
                    watchdog.extend(min(2 * window, deadline - now))
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(str(dest.parent)) from None
        raise
    if watchdog.expired:
        now = time.monotonic()
        if now >= deadline - 1e-3:
            raise transient("TooSlow", f"the download ran over http.download_timeout_s "
                                       f"({cfg.http.download_timeout_s:g} s) at {have:,} bytes: {url[:120]}")
        raise _too_slow(have - marked, now - mark, cfg, url)
    return have


def _too_slow(got: int, seconds: float, cfg: FetchConfig, url: str) -> FetchFailure:
    return transient("TooSlow", f"{got:,} bytes in {seconds:.1f} s, slower than http.min_rate_bytes_s "
                                f"({cfg.http.min_rate_bytes_s:,}): {url[:120]}")


def verify_checksum(path: Path, checksum: str, url: str = "") -> None:
    """Raise a permanent ``ChecksumMismatch`` unless ``path`` hashes to ``checksum`` (``<algo>:<hex>``)."""
    algo, _, expected = checksum.partition(":")
    if algo not in CHECKSUM_HEX:
        raise permanent("BadChecksum", f"the manifest's checksum {checksum[:80]!r} is not <md5|sha1|sha256>:<hex>")
    digest = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    if digest.hexdigest() != expected.lower():
        raise permanent("ChecksumMismatch", f"{algo} of the downloaded file is {digest.hexdigest()}, "
                                            f"the manifest says {expected} ({url[:120] or path.name})")
