"""The OpenTelemetry bridge, against the real SDK with in-memory exporters."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from codex_tools import (
    RetryPolicy,
    ToolArgumentsError,
    ToolExecutionError,
    ToolRegistry,
    ToolTimeoutError,
    telemetry,
    tool,
)
from codex_tools.contrib.opentelemetry import (
    CAPTURE_CONTENT_ENV,
    DURATION_BUCKETS,
    Instrumentation,
    instrument,
)


@dataclass
class Otel:
    registry: ToolRegistry
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def instrument(self, **kwargs: Any) -> Instrumentation:
        kwargs.setdefault("registry", self.registry)
        return instrument(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs
        )

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def tool_spans(self) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name.startswith("execute_tool ")]

    def duration_points(self) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "gen_ai.execute_tool.duration"
            for point in metric.data.data_points
            if isinstance(point, HistogramDataPoint)
        ]


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Otel(ToolRegistry(), spans, reader, tracer_provider, meter_provider)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def instrumented(otel: Otel) -> Iterator[Otel]:
    handle = otel.instrument()
    yield otel
    handle.uninstrument()


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(reason: str) -> None:
    """Fail with the given reason."""
    raise ValueError(reason)


def child_span_tool(otel: Otel) -> Any:
    tracer = otel.tracer_provider.get_tracer("tool-body")

    @tool
    def lookup(key: str) -> str:
        """Open a span of its own, as instrumented libraries do."""
        with tracer.start_as_current_span(f"inner {key}"):
            return key.upper()

    @tool
    async def alookup(key: str) -> str:
        """The same, awaited."""
        with tracer.start_as_current_span(f"inner {key}"):
            await asyncio.sleep(0)
            return key.upper()

    return lookup, alookup


def handler_ids() -> set[str]:
    return {info.id for info in telemetry.list_handlers()}


def by_name(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = (s for s in spans if s.name == name)
    return span


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


class TestSpans:
    def test_successful_call_produces_an_execute_tool_span(self, instrumented: Otel) -> None:
        instrumented.registry.register(add)

        result = instrumented.registry.invoke(
            "add", {"a": 1, "b": 2}, {"call_id": "call_7", "attempt": 1}
        )

        assert result == 3
        (span,) = instrumented.tool_spans()
        assert span.name == "execute_tool add"
        assert span.kind is SpanKind.INTERNAL
        assert span.status.status_code is StatusCode.UNSET
        assert dict(span.attributes or {}) == {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "add",
            "gen_ai.tool.call.id": "call_7",
            "gen_ai.tool.description": "Add two integers.",
            "gen_ai.tool.type": "function",
            "codex_tools.attempt": 1,
            "codex_tools.retry": False,
        }

    def test_call_id_and_description_are_omitted_when_unknown(self, otel: Otel) -> None:
        other = ToolRegistry()
        other.register(add)
        handle = otel.instrument()  # looks descriptions up in otel.registry, which lacks "add"
        try:
            other.invoke("add", {"a": 1, "b": 2})
        finally:
            handle.uninstrument()

        (span,) = otel.tool_spans()
        assert "gen_ai.tool.description" not in (span.attributes or {})
        assert "gen_ai.tool.call.id" not in (span.attributes or {})
        assert (span.attributes or {})["codex_tools.attempt"] == 1  # always an int

    def test_failing_call_has_error_status_and_type_without_its_message(
        self, instrumented: Otel
    ) -> None:
        instrumented.registry.register(explode)
        with (
            telemetry.capture(("codex", "tool", "failure")) as events,
            pytest.raises(ToolExecutionError),
        ):
            instrumented.registry.invoke("explode", {"reason": "secret-reason"})

        (span,) = instrumented.tool_spans()
        (event,) = events
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description is None
        assert (span.attributes or {})["error.type"] == type(event.metadata["error"]).__name__
        assert span.events == ()
        assert "secret-reason" not in json.dumps(dict(span.attributes or {}))

    def test_argument_error_is_a_failed_span(self, instrumented: Otel) -> None:
        instrumented.registry.register(add)
        with pytest.raises(ToolArgumentsError):
            instrumented.registry.invoke("add", {"a": "not a number", "b": 2})

        (span,) = instrumented.tool_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "ToolArgumentsError"

    async def test_timeout_is_a_failed_span_of_type_timeout_error(self, instrumented: Otel) -> None:
        @tool(timeout=0.01)
        async def hang() -> None:
            """Wait for ever."""
            await asyncio.Event().wait()

        instrumented.registry.register(hang)
        with pytest.raises(ToolTimeoutError):
            await instrumented.registry.ainvoke("hang", {})

        (span,) = instrumented.tool_spans()
        assert span.status.status_code is StatusCode.ERROR
        assert (span.attributes or {})["error.type"] == "TimeoutError"

    def test_each_retry_attempt_is_its_own_span(self, instrumented: Otel) -> None:
        calls = []

        @tool(retry=RetryPolicy(max_attempts=3))
        def flaky() -> str:
            """Fail twice, then succeed."""
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("try again")
            return "ok"

        instrumented.registry.register(flaky)
        assert instrumented.registry.invoke("flaky", {}, {"attempt": 1}) == "ok"

        spans = sorted(instrumented.tool_spans(), key=lambda s: s.start_time or 0)
        attempts = [
            (
                (s.attributes or {})["codex_tools.attempt"],
                (s.attributes or {})["codex_tools.retry"],
                s.status.status_code,
            )
            for s in spans
        ]
        assert attempts == [
            (1, False, StatusCode.ERROR),
            (2, True, StatusCode.ERROR),
            (3, True, StatusCode.UNSET),
        ]

    def test_instrumentation_errors_never_break_a_tool_call(self, otel: Otel) -> None:
        class Broken(SpanProcessor):
            def on_start(self, span: Any, parent_context: Any = None) -> None:
                raise RuntimeError("exporter bug")

        otel.tracer_provider.add_span_processor(Broken())
        otel.registry.register(add)
        before = handler_ids()
        handle = otel.instrument()
        try:
            attached = handler_ids() - before
            assert otel.registry.invoke("add", {"a": 2, "b": 2}) == 4
            assert otel.registry.invoke("add", {"a": 3, "b": 3}) == 6
            assert handler_ids() - before == attached  # not detached as a failing handler
        finally:
            handle.uninstrument()
        assert otel.registry.metrics()["add"]["success"] == 2
        assert sum(p.count for p in otel.duration_points()) == 2


class TestNesting:
    def test_span_is_the_child_of_the_callers_span_and_the_parent_of_the_tools(
        self, instrumented: Otel
    ) -> None:
        lookup, _ = child_span_tool(instrumented)
        instrumented.registry.register(lookup)
        tracer = instrumented.tracer_provider.get_tracer("caller")

        with tracer.start_as_current_span("outer") as outer:
            assert instrumented.registry.invoke("lookup", {"key": "k"}) == "K"
            assert trace.get_current_span() is outer

        spans = instrumented.finished()
        outer_span, tool_span = by_name(spans, "outer"), by_name(spans, "execute_tool lookup")
        assert parent_id(tool_span) == span_id(outer_span)
        assert parent_id(by_name(spans, "inner k")) == span_id(tool_span)

    def test_sync_invoke_of_an_async_tool_nests(self, instrumented: Otel) -> None:
        _, alookup = child_span_tool(instrumented)
        instrumented.registry.register(alookup)

        assert instrumented.registry.invoke("alookup", {"key": "k"}) == "K"

        spans = instrumented.finished()
        tool_span = by_name(spans, "execute_tool alookup")
        assert parent_id(tool_span) is None
        assert parent_id(by_name(spans, "inner k")) == span_id(tool_span)
        assert trace.get_current_span() is trace.INVALID_SPAN

    async def test_concurrent_ainvokes_of_sync_and_async_tools_each_nest(
        self, instrumented: Otel
    ) -> None:
        lookup, alookup = child_span_tool(instrumented)
        instrumented.registry.register(lookup)
        instrumented.registry.register(alookup)
        tracer = instrumented.tracer_provider.get_tracer("caller")

        with tracer.start_as_current_span("outer") as outer:
            results = await asyncio.gather(
                *(
                    instrumented.registry.ainvoke(name, {"key": f"{name}{i}"})
                    for i in range(4)
                    for name in ("lookup", "alookup")
                )
            )
            assert trace.get_current_span() is outer

        assert sorted(results) == sorted(
            f"{n}{i}".upper() for i in range(4) for n in ("lookup", "alookup")
        )
        spans = instrumented.finished()
        tool_spans = {span_id(s): s for s in instrumented.tool_spans()}
        assert len(tool_spans) == 8
        assert {parent_id(s) for s in tool_spans.values()} == {span_id(by_name(spans, "outer"))}
        inner = [s for s in spans if s.name.startswith("inner ")]
        assert len(inner) == 8
        for span in inner:
            parent = tool_spans[parent_id(span)]  # type: ignore[index]
            key = span.name.removeprefix("inner ")
            assert parent.name == f"execute_tool {key.rstrip('0123456789')}"

    def test_tool_that_calls_a_tool_nests_their_spans(self, instrumented: Otel) -> None:
        registry = instrumented.registry
        registry.register(add)

        @tool
        def add_twice(a: int) -> int:
            """Call another tool."""
            return int(
                registry.invoke("add", {"a": registry.invoke("add", {"a": a, "b": a}), "b": a})
            )

        registry.register(add_twice)
        assert registry.invoke("add_twice", {"a": 2}) == 6

        outer = by_name(instrumented.finished(), "execute_tool add_twice")
        inner = [s for s in instrumented.tool_spans() if s.name == "execute_tool add"]
        assert [parent_id(s) for s in inner] == [span_id(outer)] * 2

    def test_invocations_from_many_threads_each_get_their_own_span(
        self, instrumented: Otel
    ) -> None:
        lookup, _ = child_span_tool(instrumented)
        instrumented.registry.register(lookup)
        keys = [f"k{i}" for i in range(32)]

        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(
                pool.map(lambda k: instrumented.registry.invoke("lookup", {"key": k}), keys)
            )

        assert results == [k.upper() for k in keys]
        tool_spans = {span_id(s): s for s in instrumented.tool_spans()}
        inner = [s for s in instrumented.finished() if s.name.startswith("inner ")]
        assert len(tool_spans) == len(inner) == 32
        assert all(parent_id(tool_span) is None for tool_span in tool_spans.values())
        assert {parent_id(s) for s in inner} == set(tool_spans)


class TestContent:
    def test_content_is_recorded_when_asked_for(self, otel: Otel) -> None:
        otel.registry.register(add)
        otel.registry.register(explode)
        handle = otel.instrument(capture_content=True)
        try:
            otel.registry.invoke("add", {"a": 1, "b": 2})
            with pytest.raises(ToolExecutionError):
                otel.registry.invoke("explode", {"reason": "disk full"})
        finally:
            handle.uninstrument()

        ok = by_name(otel.finished(), "execute_tool add")
        failed = by_name(otel.finished(), "execute_tool explode")
        assert json.loads(str((ok.attributes or {})["gen_ai.tool.call.arguments"])) == {
            "a": 1,
            "b": 2,
        }
        assert json.loads(str((ok.attributes or {})["gen_ai.tool.call.result"])) == 3
        assert "disk full" in (failed.status.description or "")
        (exception,) = failed.events
        assert exception.name == "exception"
        assert "disk full" in str((exception.attributes or {})["exception.message"])

    def test_result_that_is_not_json_is_recorded_as_text(self, otel: Otel) -> None:
        @tool
        def make_cycle() -> object:
            """Return something JSON cannot hold."""
            cycle: list[object] = []
            cycle.append(cycle)
            return cycle

        otel.registry.register(make_cycle)
        handle = otel.instrument(capture_content=True)
        try:
            otel.registry.invoke("make_cycle", {})
        finally:
            handle.uninstrument()

        (span,) = otel.tool_spans()
        assert (span.attributes or {})["gen_ai.tool.call.result"] == "[[...]]"

    @pytest.mark.parametrize(("value", "captured"), [("true", True), ("TRUE", True), ("1", False)])
    def test_environment_variable_turns_capture_on(
        self, otel: Otel, monkeypatch: pytest.MonkeyPatch, value: str, captured: bool
    ) -> None:
        monkeypatch.setenv(CAPTURE_CONTENT_ENV, value)
        otel.registry.register(add)
        handle = otel.instrument()
        try:
            otel.registry.invoke("add", {"a": 1, "b": 2})
        finally:
            handle.uninstrument()

        (span,) = otel.tool_spans()
        assert ("gen_ai.tool.call.arguments" in (span.attributes or {})) is captured


class TestDurationHistogram:
    def test_durations_are_recorded_in_seconds_with_the_conventions_buckets(
        self, instrumented: Otel
    ) -> None:
        instrumented.registry.register(add)
        instrumented.registry.register(explode)
        with telemetry.capture(("codex", "tool", "success"), ("codex", "tool", "failure")) as ev:
            instrumented.registry.invoke("add", {"a": 1, "b": 2})
            instrumented.registry.invoke("add", {"a": 3, "b": 4})
            with pytest.raises(ToolExecutionError):
                instrumented.registry.invoke("explode", {"reason": "no"})

        points = {
            tuple(sorted((p.attributes or {}).items())): p for p in instrumented.duration_points()
        }
        error_type = type(ev[-1].metadata["error"]).__name__
        ok_key = (("gen_ai.operation.name", "execute_tool"), ("gen_ai.tool.name", "add"))
        failed_key = (
            ("error.type", error_type),
            ("gen_ai.operation.name", "execute_tool"),
            ("gen_ai.tool.name", "explode"),
        )
        assert set(points) == {ok_key, failed_key}
        ok, failed = points[ok_key], points[failed_key]
        assert tuple(ok.explicit_bounds) == DURATION_BUCKETS
        assert (ok.count, failed.count) == (2, 1)
        assert ok.sum == pytest.approx(sum(e.measurements["duration"] for e in ev[:2]) / 1e9)
        assert failed.sum == pytest.approx(ev[2].measurements["duration"] / 1e9)

    def test_histogram_has_unit_seconds(self, instrumented: Otel) -> None:
        instrumented.registry.register(add)
        instrumented.registry.invoke("add", {"a": 1, "b": 2})

        data = instrumented.reader.get_metrics_data()
        assert data is not None
        (metric,) = [
            m
            for r in data.resource_metrics
            for s in r.scope_metrics
            for m in s.metrics
            if m.name == "gen_ai.execute_tool.duration"
        ]
        assert metric.unit == "s"


class TestUninstrument:
    def test_uninstrument_stops_spans_and_measurements_and_is_idempotent(self, otel: Otel) -> None:
        otel.registry.register(add)
        before = handler_ids()
        handle = otel.instrument()
        otel.registry.invoke("add", {"a": 1, "b": 2})
        handle.uninstrument()
        handle.uninstrument()
        otel.registry.invoke("add", {"a": 1, "b": 2})

        assert len(otel.tool_spans()) == 1
        assert sum(p.count for p in otel.duration_points()) == 1
        assert handler_ids() == before
        assert not handle.active

    def test_two_instrumentations_work_side_by_side(self, otel: Otel) -> None:
        otel.registry.register(add)
        first, second = otel.instrument(), otel.instrument()
        otel.registry.invoke("add", {"a": 1, "b": 2})
        first.uninstrument()
        otel.registry.invoke("add", {"a": 1, "b": 2})
        second.uninstrument()

        assert len(otel.tool_spans()) == 3

    def test_uninstrument_during_a_call_still_ends_its_span_and_restores_the_context(
        self, otel: Otel
    ) -> None:
        handles: list[Instrumentation] = []

        @tool
        def stop_instrumenting() -> str:
            """Turn instrumentation off from inside a call."""
            handles[0].uninstrument()
            return "stopped"

        otel.registry.register(stop_instrumenting)
        before = handler_ids()
        handles.append(otel.instrument())
        tracer = otel.tracer_provider.get_tracer("caller")
        with tracer.start_as_current_span("outer") as outer:
            otel.registry.invoke("stop_instrumenting", {})
            assert trace.get_current_span() is outer

        (span,) = otel.tool_spans()
        assert span.end_time is not None
        assert handler_ids() == before


def test_missing_extra_names_the_pip_install(uninstalled: Callable[[str, str], None]) -> None:
    uninstalled("opentelemetry", "codex_tools.contrib.opentelemetry")
    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[otel\]'"):
        importlib.import_module("codex_tools.contrib.opentelemetry")
