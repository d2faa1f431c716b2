"""The HTTP server: `/` (the status page), `/status.json`, `/metrics`, `/-/healthy`, with optional TLS and
basic auth.

A stdlib ThreadingHTTPServer in its own daemon thread, so a slow scrape never blocks the probing event
loop and a busy event loop never delays a scrape. Paths and behaviour follow Prometheus exporters
(exporter-toolkit's landing page, `/-/healthy` as in Prometheus itself). The status page and its JSON
come from a StatusSource (agent.exporter.status), built in the request's thread and cached there; without
one (tests of the metrics alone), `/` is a small landing page.

A slow client holds only its own connection's thread: reads and writes time out after
`request_timeout_s`, and a TLS handshake happens on that thread too, never in accept().
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import html
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from agent.config import parse_listen  # the one rule of a listen address (check-config too)
from agent.errors import ConfigError
from agent.exporter.exposition import choose_encoder
from agent.exporter.families import Collector
from agent.exporter.webconfig import WebConfig

log = logging.getLogger("nkprobe.http")
IDLE_POLL_S = 3600.0  # see MetricsServer.start

_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>nkprobe</title></head>
<body><h1>nkprobe {version}</h1>
<p>Agent <b>{agent}</b>: which upstream carries each /24 of 175.45.176.0/22.</p>
<ul><li><a href="metrics">Metrics</a></li><li><a href="-/healthy">Health</a></li></ul>
</body></html>
"""


class StatusPage(Protocol):
    """What `/` and `/status.json` are served from: agent.exporter.status.StatusSource."""

    def html(self) -> bytes: ...
    def json(self) -> bytes: ...
    def gzipped(self, which: str) -> bytes: ...


class StatusOnDemand:
    """A status page made by `make` at its first request, on that request's thread: the agent holds the
    page's modules (agent.exporter.status, 0.2 MiB) only once someone has opened it (issue 25)."""

    def __init__(self, make: Callable[[], StatusPage]) -> None:
        self._make = make
        self._page: StatusPage | None = None
        self._lock = threading.Lock()

    def _get(self) -> StatusPage:
        with self._lock:
            if self._page is None:
                self._page = self._make()
            return self._page

    def html(self) -> bytes:
        return self._get().html()

    def json(self) -> bytes:
        return self._get().json()

    def gzipped(self, which: str) -> bytes:
        return self._get().gzipped(which)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_timeout_s = 30.0

    def __init__(self, address: tuple[str, int], family: int, app: MetricsServer) -> None:
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind also sets server_name from socket.getfqdn(host): a reverse DNS query at
        # start (seconds on a Pi whose resolver is down) that loads the idna codec with unicodedata
        # (0.3 MiB resident), for a name only CGI and WSGI servers read. The host as given does here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake here, on the connection's own thread, never in accept(): a client that opens a
        # connection and says nothing must not stall the server for everyone else.
        request.settimeout(self.request_timeout_s)
        context = self.app.web.ssl_context
        if context is not None:
            request = context.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A scanner speaking plain HTTP to the TLS port, a reset connection: not worth a traceback.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every 15 s would drown the journal; failures show in Prometheus' `up`

    def do_GET(self) -> None:
        app = self.server.app
        if not self._authorized(app.web):
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(app.registry))
        elif path == "/-/healthy":
            self._send(200, "text/plain; charset=utf-8", b"Healthy.\n")
        elif path == "/" and app.status is None:
            page = _LANDING.format(version=html.escape(app.version), agent=html.escape(app.agent_name()))
            self._send(200, "text/html; charset=utf-8", page.encode())
        elif path in ("/", "/status.json") and app.status is not None:
            which = "html" if path == "/" else "json"
            gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
            try:
                status = app.status
                body = (
                    status.gzipped(which)
                    if gzipped
                    else (status.html() if which == "html" else status.json())
                )
            except Exception as exc:  # a bug in the page must not take /metrics down with it
                log.exception("status page failed")
                self._send(500, "text/plain; charset=utf-8", f"status page failed: {exc}\n".encode())
                return
            kind = "text/html; charset=utf-8" if which == "html" else "application/json"
            self._send(200, kind, body, encoding="gzip" if gzipped else None)
        else:
            self._send(404, "text/plain; charset=utf-8", b"Not found. Try / or /metrics.\n")

    def _authorized(self, web: WebConfig) -> bool:
        if not web.users:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                sep = ""
            if sep and web.authorized(user, password):
                return True
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="nkprobe"')
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"Unauthorized\n")
        return False

    def _send(self, status: int, content_type: str, body: bytes, encoding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding is not None:
            self.send_header("Content-Encoding", encoding)
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class MetricsServer:
    """Binds at construction (so a busy port is a config error before any probing), serves in a thread."""

    def __init__(
        self,
        listen: str,
        registry: Collector,
        *,
        version: str,
        agent_name: Any,
        web: WebConfig | None = None,
        status: StatusPage | None = None,
    ) -> None:
        self.registry = registry
        self.status = status
        self.version = version
        self.agent_name = agent_name  # a callable: the name follows config reloads
        self.web = web or WebConfig()
        host, port = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._httpd = _Server((host, port), family, self)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {listen}: {exc.strerror}; pick another --web.listen-address"
            ) from None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        # serve_forever wakes every poll_interval (0.5 s by default) to look for a shutdown request: two
        # wake-ups a second of a thread that must take the GIL, more CPU than the agent's pings on an idle
        # Pi (issue 25). It sleeps until a connection comes instead; `stop` wakes it with one.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": IDLE_POLL_S}, name="nkprobe-http",
            daemon=True,
        )  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        stopper = threading.Thread(target=self._httpd.shutdown, name="nkprobe-http-stop", daemon=True)
        stopper.start()
        host, port = self._httpd.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(str(host), str(host))
        deadline = time.monotonic() + 5.0
        while stopper.is_alive() and time.monotonic() < deadline:
            # A connection wakes the serving thread's select, so it sees the shutdown request now; again
            # until it has (the first may come before the request is set).
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                pass
            stopper.join(0.05)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
