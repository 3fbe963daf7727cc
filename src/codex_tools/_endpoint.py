"""An HTTP endpoint serving one registry's metrics, from a daemon thread.

``/metrics.json`` is ``metrics(buckets=True)`` as JSON: what ``merge_metrics`` and
``codex-tools top`` read, with the standard library alone. ``/metrics`` is the
Prometheus exposition, when ``prometheus_client`` is there to write it (see
``codex_tools.contrib.prometheus.serve_metrics``); without it, 501 and the ``pip``
line that adds it. Other paths are 404, other methods than GET and HEAD 405.

Each request only reads a snapshot, so serving never blocks a tool call, and each runs in
a thread of its own, so a slow client does not hold up the next scrape.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from codex_tools import ToolRegistry, default_registry

__all__ = ["Exposition", "MetricsServer"]

#: Writes the Prometheus text for a request's ``Accept`` header: ``(body, content type)``.
Exposition = Callable[[str], tuple[bytes, str]]

_NO_EXPOSITION = b"/metrics needs prometheus_client: pip install 'codex-tools[prometheus]'\n"
_NOT_FOUND = b"not found: the metrics are at /metrics and /metrics.json\n"
_JSON = "application/json"
_REQUEST_TIMEOUT = 10.0  # a client that stops sending mid-request is dropped after this


class MetricsServer:
    """A running metrics endpoint: ``url`` (``http://HOST:PORT``, no path), ``port``;
    ``close()`` (or leaving a ``with`` block) stops it.

    ``registry`` None reads the process-wide registry at each request. ``port`` 0
    picks a free one. An address in use raises ``OSError``.
    """

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        exposition: Exposition | None = None,
    ) -> None:
        self._server = _Server((host, port), registry, exposition)
        self.host = host
        self.port: int = self._server.server_address[1]
        name = f"[{host}]" if ":" in host else host
        self.url = f"http://{name}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},  # how soon close() returns
            name=f"codex-tools metrics {self.url}",
            daemon=True,  # never keeps the process alive
        )
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"<MetricsServer {self.url}{' closed' if self._closed else ''}>"

    def close(self) -> None:
        """Stop serving and free the port; closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client that hangs never delays the process's exit
    allow_reuse_address = False  # a port in use is an error, not shared

    def __init__(
        self,
        address: tuple[str, int],
        registry: ToolRegistry | None,
        exposition: Exposition | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.registry = registry
        self.exposition = exposition

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client that went away mid-response is no error of ours."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = _REQUEST_TIMEOUT
    server_version = "codex-tools"

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def __getattr__(self, name: str) -> Any:
        """Every other method (``do_POST``, ``do_FOO``...) is not allowed here."""
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n", "text/plain", True)

    def _respond(self, body: bool) -> None:
        try:
            status, data, content_type = self._route()
        except Exception as error:  # noqa: BLE001  (one bad request must not end the server)
            data = f"cannot read the metrics: {type(error).__name__}\n".encode()
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain"
        self._send(status, data, content_type, body)

    def _route(self) -> tuple[HTTPStatus, bytes, str]:
        path = urlsplit(self.path).path
        server = self.server
        if path == "/metrics.json":
            registry = default_registry() if server.registry is None else server.registry
            return HTTPStatus.OK, json.dumps(registry.metrics(buckets=True)).encode(), _JSON
        if path != "/metrics":
            return HTTPStatus.NOT_FOUND, _NOT_FOUND, "text/plain"
        if server.exposition is None:
            return HTTPStatus.NOT_IMPLEMENTED, _NO_EXPOSITION, "text/plain"
        data, content_type = server.exposition(self.headers.get("Accept", ""))
        return HTTPStatus.OK, data, content_type

    def _send(self, status: HTTPStatus, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(status)
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        if content_type.startswith("text/plain") and "charset" not in content_type:
            content_type += "; charset=utf-8"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: an MCP server's stderr is its user's log, not an access log."""
