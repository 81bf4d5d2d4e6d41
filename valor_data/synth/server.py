"""A loopback HTTP server for tests and the demo: Range requests and fault injection.

It binds to 127.0.0.1 only and serves one folder. Faults are rules matched against the
request path (shell-style patterns); each rule fires ``times`` times, then the file is
served normally, so transient faults can be recovered from::

    with LoopbackServer(folder) as server:
        server.add_fault("/media/abc*.mp4", Fault("status", code=429, retry_after=1), times=2)
        url = server.url + "/media/abcdefghijk.mp4"
"""

from __future__ import annotations

import fnmatch
import json
import logging
import mimetypes
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger(__name__)

FAULT_KINDS = ("status", "html", "stall", "truncate", "reset")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_ERROR_PAGE = b"<!DOCTYPE html><html><body><h1>Something went wrong</h1></body></html>\n"


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    status: answer ``code`` (with ``Retry-After`` when set) and an HTML body.
    html: answer 200 with an HTML error page instead of the file.
    stall: wait ``seconds`` before answering (a client timeout should fire).
    truncate: promise the full length, send ``fraction`` of it, close.
    reset: close the connection with a TCP reset before answering.
    """

    kind: str
    code: int = 500
    retry_after: float | None = None
    seconds: float = 30.0
    fraction: float = 0.5

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {FAULT_KINDS}")


@dataclass
class _Rule:
    pattern: str
    fault: Fault
    remaining: int | None     # None: forever


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt, *args):  # route to logging instead of stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def do_HEAD(self):
        self._serve(body=False)

    def do_GET(self):
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        self.server.record(self.command, path, self.headers.get("Range"))
        fault = self.server.take_fault(path)
        if fault is not None and self._inject(fault, body):
            return
        file = self.server.resolve(path)
        if file is None:
            self._send_status(404, body)
            return
        self._send_file(file, body, fault)

    def _inject(self, fault: Fault, body: bool) -> bool:
        """Apply a fault that replaces the response; False for faults applied while serving."""
        if fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return True
        if fault.kind == "stall":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "status":
            extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            self._send_status(fault.code, body, extra)
            return True
        if fault.kind == "html":
            self._send_bytes(200, _ERROR_PAGE, "text/html; charset=utf-8", body)
            return True
        return False   # truncate: applied in _send_file

    def _send_status(self, code: int, body: bool, headers: dict | None = None) -> None:
        self._send_bytes(code, _ERROR_PAGE, "text/html; charset=utf-8", body, headers)

    def _send_bytes(self, code: int, data: bytes, ctype: str, body: bool, headers: dict | None = None):
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_file(self, file: Path, body: bool, fault: Fault | None) -> None:
        size = file.stat().st_size
        start, end = 0, size - 1
        requested = self.headers.get("Range")
        code = 200
        if requested:
            span = _parse_range(requested, size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            (start, end), code = span, 206
        length = end - start + 1 if size else 0
        self.send_response(code)
        self.send_header("Content-Type", mimetypes.guess_type(file.name)[0] or "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if code == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body or not length:
            return
        send = length if fault is None or fault.kind != "truncate" else int(length * fault.fraction)
        try:
            with open(file, "rb") as fh:
                fh.seek(start)
                remaining = send
                while remaining > 0:
                    chunk = fh.read(min(1 << 16, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if send < length:
            self.close_connection = True


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=a-b`` range as inclusive (start, end), or None when unsatisfiable."""
    match = _RANGE_RE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.groups()
    if not first:   # suffix: the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start < size and start <= end else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, port: int):
        super().__init__(("127.0.0.1", port), _Handler)
        self.root = root.resolve()
        self.rules: list[_Rule] = []
        self.requests: list[tuple[str, str, str | None]] = []
        self.times: list[float] = []          # when each request arrived (epoch s)
        self.lock = threading.Lock()

    def resolve(self, path: str) -> Path | None:
        """The file under root for a URL path, or None (missing, a folder, or outside root)."""
        candidate = (self.root / path.lstrip("/")).resolve()
        if self.root not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for rule in self.rules:
                if fnmatch.fnmatchcase(path, rule.pattern) and rule.remaining != 0:
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None

    def record(self, method: str, path: str, range_header: str | None) -> None:
        with self.lock:
            self.requests.append((method, path, range_header))
            self.times.append(time.time())

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (ffmpeg does after seeking) is normal; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Serve ``root`` on 127.0.0.1 (an ephemeral port unless given) in a background thread."""

    def __init__(self, root: str | os.PathLike, port: int = 0):
        self._server = _Server(Path(root), port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        """(method, path, Range header) of every request so far."""
        with self._server.lock:
            return list(self._server.requests)

    @property
    def timed_requests(self) -> list[tuple[float, str, str, str | None]]:
        """(arrival time, method, path, Range header) of every request so far."""
        with self._server.lock:
            return [(t, *r) for t, r in zip(self._server.times, self._server.requests, strict=True)]

    def add_fault(self, pattern: str, fault: Fault, times: int | None = 1) -> None:
        """Inject ``fault`` on paths matching ``pattern``, ``times`` times (None: always)."""
        with self._server.lock:
            self._server.rules.append(_Rule(pattern, fault, times))

    def load_faults(self, path: str | os.PathLike) -> None:
        """Rules from JSON: ``[{"pattern": "/media/x*", "kind": "status", "code": 429, "times": 2}]``."""
        for item in json.loads(Path(path).read_text(encoding="utf-8")):
            item = dict(item)
            pattern, times = item.pop("pattern"), item.pop("times", 1)
            self.add_fault(pattern, Fault(**item), times)

    def clear_faults(self) -> None:
        with self._server.lock:
            self._server.rules.clear()

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="loopback-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
