"""End to end: the real OTLP/HTTP exporters send our span and metric to a local receiver."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from codex_tools import ToolExecutionError, ToolRegistry, tool
from codex_tools.contrib.opentelemetry import DURATION_BUCKETS, instrument


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP endpoint that keeps the raw protobuf bodies it was sent, by path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.bodies: dict[str, list[bytes]] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.bodies.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def attributes(pairs: Any) -> dict[str, Any]:
    def value(kv: KeyValue) -> Any:
        return getattr(kv.value, kv.value.WhichOneof("value"))

    return {kv.key: value(kv) for kv in pairs}


@tool
def divide(a: float, b: float) -> float:
    """Divide a by b."""
    return a / b


def test_span_and_histogram_reach_an_otlp_http_receiver(receiver: Receiver) -> None:
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(
            OTLPSpanExporter(
                endpoint=f"{receiver.url}/v1/traces",
                timeout=10,
                compression=Compression.NoCompression,
            )
        )
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(
            endpoint=f"{receiver.url}/v1/metrics",
            timeout=10,
            compression=Compression.NoCompression,
        ),
        export_interval_millis=math.inf,  # exported only by the force_flush below
    )
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    registry = ToolRegistry()
    registry.register(divide)
    handle = instrument(tracer_provider, meter_provider, registry=registry)
    try:
        assert registry.invoke("divide", {"a": 1, "b": 4}, {"call_id": "c1"}) == 0.25
        with pytest.raises(ToolExecutionError):
            registry.invoke("divide", {"a": 1, "b": 0}, {"call_id": "c2"})
        assert meter_provider.force_flush(timeout_millis=10_000)
    finally:
        handle.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()

    spans = {}
    for body in receiver.bodies["/v1/traces"]:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                assert scope_spans.scope.name == "codex_tools.contrib.opentelemetry"
                for span in scope_spans.spans:
                    spans[attributes(span.attributes)["gen_ai.tool.call.id"]] = span
    assert set(spans) == {"c1", "c2"}
    assert spans["c1"].name == "execute_tool divide"
    assert attributes(spans["c1"].attributes)["gen_ai.tool.description"] == "Divide a by b."
    assert attributes(spans["c2"].attributes)["error.type"] == "ZeroDivisionError"
    assert spans["c2"].status.code == spans["c2"].status.STATUS_CODE_ERROR

    points = []
    for body in receiver.bodies["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == "gen_ai.execute_tool.duration":
                        assert metric.unit == "s"
                        points.extend(metric.histogram.data_points)
    by_error = {attributes(p.attributes).get("error.type"): p for p in points}
    assert set(by_error) == {None, "ZeroDivisionError"}
    assert all(tuple(p.explicit_bounds) == DURATION_BUCKETS for p in points)
    assert [p.count for p in (by_error[None], by_error["ZeroDivisionError"])] == [1, 1]
