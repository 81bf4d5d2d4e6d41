"""A forwarding HTTP proxy on loopback for tests: it logs every request that passes through it.

Clients send absolute URLs (``GET http://host/path``), as yt-dlp and ffmpeg's ``-http_proxy``
do for http targets. Every request is forwarded to one upstream (the loopback media server),
whatever host it names, so test URLs may carry real hostnames (``rr1---sn-x.googlevideo.com``)
without any DNS. Each log entry: (time, client IP, method, host, path?query, headers as a dict).
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self._forward(body=True)

    def do_HEAD(self):
        self._forward(body=False)

    def _forward(self, body: bool) -> None:
        parts = urllib.parse.urlsplit(self.path)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.server.record(self.client_address[0], self.command, parts.hostname or "", target,
                           dict(self.headers.items()))
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=30)
        try:
            upstream.request(self.command, urllib.parse.urlunsplit(("", "", parts.path, parts.query, "")),
                             headers={**headers, "Host": f"{self.server.upstream[0]}:{self.server.upstream[1]}"})
            response = upstream.getresponse()
            data = response.read() if body else b""
            self.send_response(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in _HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", response.getheader("Content-Length") or str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            upstream.close()


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.log: list[tuple[float, str, str, str, str, dict]] = []
        self.lock = threading.Lock()

    def record(self, client: str, method: str, host: str, path: str, headers: dict) -> None:
        with self.lock:
            self.log.append((time.time(), client, method, host, path, headers))

    def handle_error(self, request, client_address) -> None:
        pass   # clients (ffmpeg) hang up after seeking


class LoggingProxy:
    """``with LoggingProxy(server_url) as proxy: ... proxy.url ... proxy.requests``."""

    def __init__(self, upstream_url: str):
        parts = urllib.parse.urlsplit(upstream_url)
        self._server = _ProxyServer((parts.hostname, parts.port))

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[float, str, str, str, str, dict]]:
        with self._server.lock:
            return list(self._server.log)

    def __enter__(self) -> LoggingProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
