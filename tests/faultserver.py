"""An independent misbehaving HTTP/1.1 server for fetch tests: raw sockets, one thread per connection.

Written from the socket up (not ``valor_data/synth/server.py``), so each fault is the real thing
on the wire: a reset is an RST (SO_LINGER 0, then close), a trickle sends one byte at a time
seconds apart, a silent server accepts and never answers. Rules are set per path:

- ``rst``: part of the body (``fraction``), then an RST;
- ``trickle_body`` / ``trickle_headers``: one byte every ``interval_s`` of the body / the headers;
- ``silent``: read the request, never answer;
- ``huge_length``: ``Content-Length: 10**13`` (status 200 whatever the Range), then the real body;
- ``ignore_range``: always 200 and the whole body;
- ``retry_after``: status ``code`` with ``Retry-After: <retry_after>``;
- ``stall_close``: part of the body (``fraction``), ``seconds`` of silence, then a normal close (FIN).

A path without a rule is served with Range support; an unknown path is a 404. Every thread stops
by itself: the server after ``lifetime_s`` (or on exit), each connection when its reply is done or
the server stops; every wait is an Event wait with a timeout.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Rule:
    kind: str
    times: int | None = None       # the first n requests of the path (None: every one)
    interval_s: float = 0.1
    seconds: float = 1.0
    fraction: float = 0.5
    code: int = 503
    retry_after: str = "100000"


class FaultServer:
    """``with FaultServer({"/a.mp4": data}) as server: server.rule("/a.mp4", "silent")``."""

    def __init__(self, files: dict[str, bytes], lifetime_s: float = 60.0):
        self.files = dict(files)
        self.rules: dict[str, Rule] = {}
        self.requests: list[tuple[str, str | None]] = []    # (path, Range header) in arrival order
        self.lifetime_s = lifetime_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def rule(self, path: str, kind: str, **params) -> None:
        self.rules[path] = Rule(kind, **params)

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def __enter__(self) -> FaultServer:
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(32)
        self._listener.settimeout(0.1)
        self._start(self._accept_loop)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in list(self._threads):
            thread.join(timeout=5)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        deadline = time.monotonic() + self.lifetime_s
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                self._start(self._serve, conn)
        finally:
            self._stop.set()          # connections still open end too
            self._listener.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            request = self._read_request(conn)
            if request is not None:
                self._answer(conn, *request)
        except OSError:
            pass                      # the client went away
        finally:
            conn.close()

    def _read_request(self, conn: socket.socket) -> tuple[str, str | None] | None:
        conn.settimeout(0.2)
        data = b""
        while b"\r\n\r\n" not in data:
            if self._stop.is_set() or len(data) > 65536:
                return None
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            if not chunk:
                return None
            data += chunk
        conn.settimeout(5.0)          # a client that stops reading ends the reply
        lines = data.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        with self._lock:
            self.requests.append((path, headers.get("range")))
        return path, headers.get("range")

    def _rule_for(self, path: str) -> Rule | None:
        with self._lock:
            rule = self.rules.get(path)
            if rule is None or rule.times == 0:
                return None
            if rule.times is not None:
                rule.times -= 1
            return rule

    def _answer(self, conn: socket.socket, path: str, range_header: str | None) -> None:
        body = self.files.get(path)
        rule = self._rule_for(path)
        kind = rule.kind if rule else "serve"
        if kind == "silent":
            self._stop.wait(self.lifetime_s)
            return
        if kind == "retry_after":
            text = b"try later\n"
            conn.sendall(_head(rule.code, {"Retry-After": rule.retry_after, "Content-Length": len(text)}) + text)
            return
        if body is None:
            conn.sendall(_head(404, {"Content-Length": 0}))
            return
        if kind == "huge_length":
            conn.sendall(_head(200, {"Content-Length": 10 ** 13}) + body)
            return
        status, headers, payload = _ranged(body, None if kind == "ignore_range" else range_header)
        head = _head(status, headers)
        if kind == "trickle_headers":
            self._trickle(conn, head, rule.interval_s)
            conn.sendall(payload)
        elif kind == "trickle_body":
            conn.sendall(head)
            self._trickle(conn, payload, rule.interval_s)
        elif kind in ("stall_close", "rst"):
            conn.sendall(head + payload[: int(len(payload) * rule.fraction)])
            self._stop.wait(rule.seconds if kind == "stall_close" else 0.2)
            if kind == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.sendall(head + payload)

    def _trickle(self, conn: socket.socket, data: bytes, interval_s: float) -> None:
        for i in range(len(data)):
            if self._stop.wait(interval_s):
                return
            conn.sendall(data[i: i + 1])


def _ranged(body: bytes, range_header: str | None) -> tuple[int, dict, bytes]:
    match = _RANGE.fullmatch(range_header or "")
    if not match:
        return 200, {"Content-Length": len(body), "Accept-Ranges": "bytes"}, body
    first = int(match.group(1))
    last = min(int(match.group(2)) if match.group(2) else len(body) - 1, len(body) - 1)
    if first >= len(body):
        return 416, {"Content-Range": f"bytes */{len(body)}", "Content-Length": 0}, b""
    return 206, {"Content-Range": f"bytes {first}-{last}/{len(body)}", "Content-Length": last - first + 1,
                 "Accept-Ranges": "bytes"}, body[first: last + 1]


_REASONS = {200: "OK", 206: "Partial Content", 404: "Not Found", 416: "Range Not Satisfiable",
            429: "Too Many Requests", 503: "Service Unavailable"}


def _head(status: int, headers: dict) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "Content-Type: application/octet-stream",
             "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
