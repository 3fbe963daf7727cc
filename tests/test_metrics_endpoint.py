"""The metrics endpoint: ``/metrics`` and ``/metrics.json`` over real HTTP on loopback."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import codex_tools
from codex_tools import ToolRegistry, merge_metrics
from codex_tools._cli.mcp import metrics_endpoint
from codex_tools._endpoint import MetricsServer
from codex_tools.contrib.prometheus import serve_metrics

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def fetch(url: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers=headers)
    try:
        with _opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def busy() -> ToolRegistry:
    registry = ToolRegistry()
    registry.register(lambda: 1, name="one")
    registry.register(lambda: 1, name="odd\udc80 [bold]name\n")
    for _ in range(3):
        registry.invoke("one")
    registry.invoke("odd\udc80 [bold]name\n")
    return registry


def test_metrics_json_is_the_snapshot_with_buckets(busy: ToolRegistry) -> None:
    with serve_metrics(busy) as server:
        status, headers, body = fetch(f"{server.url}/metrics.json")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    snapshot = json.loads(body)
    assert snapshot.keys() == busy.metrics().keys()  # the surrogate survives the trip
    assert snapshot["one"]["success"] == 3
    assert (
        merge_metrics([snapshot])["one"]["p50_latency_ms"]
        == busy.metrics()["one"]["p50_latency_ms"]
    )


def test_metrics_is_the_prometheus_text(busy: ToolRegistry) -> None:
    with serve_metrics(busy, port=0) as server:
        status, headers, body = fetch(f"{server.url}/metrics?ignored=1")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    [count] = [
        s
        for s in families["codex_tools_tool_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["tool"] == "one"
    ]
    assert count.value == 3


@pytest.mark.parametrize("path", ["/", "/metrics/", "/metrics.jsonx", "/../metrics", "/%00"])
def test_other_paths_are_404(busy: ToolRegistry, path: str) -> None:
    with serve_metrics(busy) as server:
        status, _, body = fetch(server.url + path)
    assert status == 404
    assert b"/metrics.json" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_other_methods_than_get_and_head_are_405(busy: ToolRegistry, method: str) -> None:
    with serve_metrics(busy) as server:
        status, headers, _ = fetch(f"{server.url}/metrics.json", method)
        ok, _, _ = fetch(f"{server.url}/metrics.json")  # and it keeps serving
    assert (status, headers["Allow"], ok) == (405, "GET, HEAD", 200)


def test_head_sends_the_headers_only(busy: ToolRegistry) -> None:
    with serve_metrics(busy) as server:
        status, headers, body = fetch(f"{server.url}/metrics.json", "HEAD")
    assert (status, body) == (200, b"")
    assert int(headers["Content-Length"]) > 0


def test_a_stuck_client_holds_up_neither_scrapes_nor_calls(busy: ToolRegistry) -> None:
    with serve_metrics(busy) as server, socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /metrics.json HTTP/1.1\r\nHost: x\r\n")  # and never the end
        busy.invoke("one")
        status, _, body = fetch(f"{server.url}/metrics.json")
    assert status == 200
    assert json.loads(body)["one"]["success"] == 4


def test_close_frees_the_port_and_is_idempotent(busy: ToolRegistry) -> None:
    server = serve_metrics(busy)
    server.close()
    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    assert "closed" in repr(server)
    assert not any(t.name.startswith("codex-tools metrics") for t in threading.enumerate())


def test_a_port_in_use_is_an_os_error() -> None:
    with serve_metrics() as first, pytest.raises(OSError, match="in use"):
        serve_metrics(port=first.port)


def test_without_a_registry_the_default_one_is_read_at_each_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(codex_tools, "_default", ToolRegistry())  # leave the real one alone
    with serve_metrics() as server:
        codex_tools.register(lambda: 1, name="later")
        codex_tools.invoke("later")
        _, _, body = fetch(f"{server.url}/metrics.json")
    assert json.loads(body)["later"]["success"] == 1


def test_an_empty_registry_is_served_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not mistaken for "no registry", which would read the default one."""
    monkeypatch.setattr(codex_tools, "_default", ToolRegistry())
    codex_tools.register(lambda: 1, name="elsewhere")
    codex_tools.invoke("elsewhere")
    with serve_metrics(ToolRegistry()) as server:
        _, _, body = fetch(f"{server.url}/metrics.json")
    assert json.loads(body) == {}


def test_the_cli_endpoint_serves_json_without_the_prometheus_extra(
    busy: ToolRegistry, uninstalled: Callable[[str, str], None]
) -> None:
    uninstalled("prometheus_client", "codex_tools.contrib.prometheus")
    with pytest.raises(ImportError):
        importlib.import_module("codex_tools.contrib.prometheus")

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        server = metrics_endpoint(busy, 0, verbose=False)
    assert server is not None
    with server:
        json_status, _, body = fetch(f"{server.url}/metrics.json")
        text_status, _, hint = fetch(f"{server.url}/metrics")
    assert (json_status, json.loads(body)["one"]["success"]) == (200, 3)
    assert text_status == 501
    assert b"pip install 'codex-tools[prometheus]'" in hint
    assert "/metrics.json only" in stderr.getvalue()


def test_a_server_without_exposition_says_what_to_install() -> None:
    with MetricsServer(ToolRegistry()) as server:
        status, _, body = fetch(f"{server.url}/metrics")
    assert status == 501
    assert body.startswith(b"/metrics needs prometheus_client")


def test_a_failing_snapshot_is_a_500_and_the_server_goes_on() -> None:
    class Broken(ToolRegistry):
        fail = True

        def metrics(self, *, buckets: bool = False) -> dict[str, dict[str, Any]]:
            if self.fail:
                raise RuntimeError("disk on fire")
            return super().metrics(buckets=buckets)

    registry = Broken()
    with MetricsServer(registry) as server:
        first, _, body = fetch(f"{server.url}/metrics.json")
        registry.fail = False
        second, _, _ = fetch(f"{server.url}/metrics.json")
    assert (first, second) == (500, 200)
    assert body == b"cannot read the metrics: RuntimeError\n"
