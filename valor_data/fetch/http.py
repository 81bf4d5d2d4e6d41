"""Direct http(s) media: whole-file downloads with Range resume, checksums, and a short diagnostic probe.

``download`` streams a file to a partial file in ``W/fetch/downloads``; a retry resumes
it with ``Range: bytes=<have>-``. The status code, Content-Type and Content-Length are
checked, so an error page or a truncated body is a failure, never a clip. ``verify_checksum``
compares a finished file with the digest its manifest row carries (``<algo>:<hex>``). ``diagnose``
asks for the first KiB of a URL that ffmpeg could not read, to say precisely why
(HTTP status with Retry-After, an HTML page, an empty file).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import socket
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


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (never to ftp or file)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.HTTPError(newurl, 403, f"refusing redirect to {newurl[:80]}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_HttpOnlyRedirects())


def _open(url: str, cfg: FetchConfig, headers: dict[str, str] | None = None):
    if not url.lower().startswith(("http://", "https://")):
        raise permanent("BadUrl", f"not an http(s) URL: {url[:80]}")
    request = urllib.request.Request(url, headers={"User-Agent": cfg.http.user_agent, **(headers or {})})
    try:
        return _OPENER.open(request, timeout=cfg.timeout_s)
    except urllib.error.HTTPError as exc:
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        if exc.code == 416:
            return exc   # the caller reads Content-Range
        raise from_http_status(exc.code, f"HTTP {exc.code} {exc.reason} for {url[:120]}", retry_after) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _network(exc, url) from None


def _network(exc: BaseException, url: str) -> FetchFailure:
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return transient("Timeout", f"timed out reading {url[:120]}")
    return transient("Network", f"{type(reason).__name__}: {reason} ({url[:120]})")


def _is_html(content_type: str | None, head: bytes) -> bool:
    return "html" in (content_type or "").lower() or head.lstrip()[:9].lower().startswith(_HTML_START)


def diagnose(url: str, cfg: FetchConfig, headers: dict[str, str] | None = None) -> FetchFailure | None:
    """Why ffmpeg could not read ``url``: a precise failure, or None when the URL looks like media."""
    try:
        response = _open(url, cfg, {**(headers or {}), "Range": "bytes=0-1023"})
    except FetchFailure as failure:
        return failure
    with response:
        if response.status == 416:
            if (response.headers.get("Content-Range") or "").endswith("/0"):
                return permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
            return permanent("HTTP416", f"HTTP 416 for the first bytes of {url[:120]}")
        try:
            head = response.read(1024)
        except (http.client.HTTPException, OSError) as exc:
            return _network(exc, url)
        if not head:
            return permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
        if _is_html(response.headers.get("Content-Type"), head):
            return permanent("HtmlPage", f"the server sent an HTML page, not media: {url[:120]}")
    return None


def download(url: str, dest: Path, cfg: FetchConfig) -> int:
    """Download ``url`` to ``dest`` (resuming a partial ``dest``); return its size in bytes."""
    have = dest.stat().st_size if dest.exists() else 0
    response = _open(url, cfg, {"Range": f"bytes={have}-"} if have else None)
    with response:
        total = _expected_total(response, have, url)
        if response.status == 416:
            return have        # already complete (checked by _expected_total)
        if response.status == 200 and have:
            have = 0           # the server ignored Range: start again
        if total is not None and total > cfg.http.max_bytes:
            raise permanent("TooLarge", f"{total:,} bytes is more than http.max_bytes ({cfg.http.max_bytes:,})")
        have = _copy(response, dest, have, cfg, url)
    if total is not None and have < total:
        raise transient("Truncated", f"got {have:,} of {total:,} bytes from {url[:120]}")
    if have == 0:
        raise permanent("EmptyFile", f"the server sent an empty file (0 bytes): {url[:120]}")
    with open(dest, "rb") as fh:
        if _is_html(None, fh.read(1024)):
            raise permanent("HtmlPage", f"the server sent an HTML page, not media: {url[:120]}")
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
        return int(match.group(3)) if match.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _copy(response, dest: Path, have: int, cfg: FetchConfig, url: str) -> int:
    try:
        with open(dest, "ab" if have else "wb") as out:
            while True:
                try:
                    chunk = response.read(cfg.http.chunk_bytes)
                except (http.client.HTTPException, OSError) as exc:
                    log.debug("download of %s broke off at %d bytes: %s", url, have, exc)
                    return have
                if not chunk:
                    return have
                out.write(chunk)
                have += len(chunk)
                if have > cfg.http.max_bytes:
                    raise permanent("TooLarge", f"more than http.max_bytes ({cfg.http.max_bytes:,}) bytes")
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(str(dest.parent)) from None
        raise


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
