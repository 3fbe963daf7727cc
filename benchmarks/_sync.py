"""Scenarios 1, 2 and 4: one synchronous call, measured every way a user could measure it.

All cases run as one interleaved group, so the direct call, the timing floor and the
other libraries' figures are taken under the same conditions as ``invoke``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from benchmarks._harness import Check, Row, Run, Sizes, interleave, loop, ns
from benchmarks._tools import ARGS, add, calls, fresh_registry
from codex_tools import telemetry
from codex_tools._call import FIRST_TRY, begin, succeed

__all__ = ["run"]

_TIMED_CALL = "t = p(); f(a=1, b=2); d = p() - t; "


def _around(run: Run, scope: Any) -> Run:
    """``run`` with ``scope()`` entered around each loop (and out of the timed part)."""

    def wrapped(n: int) -> float:
        with scope():
            return run(n)

    return wrapped


def _prometheus(check: Check) -> tuple[dict[str, Run], Any]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    counter = Counter("tool_calls", "Calls.", ["tool", "result"], registry=registry)
    histogram = Histogram("tool_latency_seconds", "Latency.", ["tool"], registry=registry)
    namespace = {"p": time.perf_counter_ns, "f": add.fn, "c": counter, "h": histogram}
    namespace |= {"cb": counter.labels("bound", "ok"), "hb": histogram.labels("bound")}
    cases = {
        "prometheus": loop(
            _TIMED_CALL + 'h.labels("add").observe(d / 1e9); c.labels("add", "ok").inc()',
            namespace,
        ),
        "prometheus_bound": loop(_TIMED_CALL + "hb.observe(d / 1e9); cb.inc()", namespace),
    }

    def verify(operations: Mapping[str, int]) -> str:
        results = []
        for case, tool in (("prometheus", "add"), ("prometheus_bound", "bound")):
            counted = registry.get_sample_value("tool_calls_total", {"tool": tool, "result": "ok"})
            observed = registry.get_sample_value("tool_latency_seconds_count", {"tool": tool})
            expected = operations[case]
            results.append(
                check(
                    counted == observed == expected,
                    f"prometheus {tool}: {counted} counted, {observed} observed, {expected} calls",
                )
            )
        return "ok" if all(r == "ok" for r in results) else "; ".join(results)

    return cases, verify


def _opentelemetry_sdk(check: Check) -> tuple[dict[str, Run], Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("benchmarks")
    counter = meter.create_counter("tool.calls")
    histogram = meter.create_histogram("tool.duration", unit="s")
    namespace = {"p": time.perf_counter_ns, "f": add.fn, "c": counter, "h": histogram}
    namespace["attrs"] = {"gen_ai.tool.name": "add"}
    cases = {"otel_sdk": loop(_TIMED_CALL + "h.record(d / 1e9, attrs); c.add(1, attrs)", namespace)}

    def verify(operations: Mapping[str, int]) -> str:
        points = _otel_points(reader)
        counted, observed = points.get("tool.calls"), points.get("tool.duration")
        expected = operations["otel_sdk"]
        return check(
            counted == observed == expected,
            f"OpenTelemetry SDK: {counted} counted, {observed} observed, {expected} calls",
        )

    return cases, verify


def _otel_points(reader: Any) -> dict[str, int]:
    """Each metric's count (a counter's sum, a histogram's count) as the reader sees it."""
    found: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "count", None)
                    if value is None:
                        value = point.value
                    found[metric.name] = found.get(metric.name, 0) + int(value)
    return found


def _bridge(registry: Any, check: Check) -> tuple[Run | None, Any]:
    """The OpenTelemetry bridge around ``invoke``, if the contrib module can be imported."""
    try:
        from codex_tools.contrib.opentelemetry import instrument
    except ImportError:
        return None, None
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    spans = [0]

    @contextmanager
    def instrumented() -> Iterator[None]:
        handle = instrument(tracer_provider, meter_provider, registry=registry)
        try:
            yield
        finally:
            handle.uninstrument()
            spans[0] += len(exporter.get_finished_spans())
            exporter.clear()

    run = _around(loop('invoke("add_bridge", args)', _invoke_namespace(registry)), instrumented)

    def verify(operations: Mapping[str, int]) -> str:
        expected = operations["bridge"]
        recorded = _otel_points(reader).get("gen_ai.execute_tool.duration")
        return check(
            spans[0] == recorded == expected == calls(registry, "add_bridge"),
            f"OpenTelemetry bridge: {spans[0]} spans, {recorded} durations, {expected} calls",
        )

    return run, verify


def _invoke_namespace(registry: Any) -> dict[str, Any]:
    return {
        "invoke": registry.invoke,
        "args": ARGS,
        "text": json.dumps(ARGS),  # as a model sends them
        "context": {"thread_id": "t1", "turn_id": "u1", "call_id": "c1", "attempt": 1},
    }


def run(sizes: Sizes, check: Check) -> list[Row]:
    registry = fresh_registry()
    for name in ("add_handler", "add_bridge", "add_record", "add_json"):
        registry.register(add, name=name)
    events = [0]

    def count(*_: Any) -> None:
        events[0] += 1

    @contextmanager
    def handled() -> Iterator[None]:
        telemetry.attach_many("benchmarks.count", telemetry.TOOL_EVENTS, count)
        try:
            yield
        finally:
            telemetry.detach("benchmarks.count")

    direct = {"p": time.perf_counter_ns, "f": add.fn, "v": add._signature.validator, "args": ARGS}
    record_ns = {
        "p": time.perf_counter_ns,
        "begin": begin,
        "metrics": registry._metrics,
        "first": FIRST_TRY,
        "succeed": succeed,  # private: scenario 2 times the record on its own
    }
    prometheus_cases, prometheus_verify = _prometheus(check)
    otel_cases, otel_verify = _opentelemetry_sdk(check)
    bridge, bridge_verify = _bridge(registry, check)
    cases: dict[str, Run] = {
        "direct": loop("f(a=1, b=2)", direct),
        "floor": loop("p(); p()", direct),
        "validate": loop("v.validate_python(args)", direct),
        "invoke": loop('invoke("add", args)', _invoke_namespace(registry)),
        "invoke_json": loop('invoke("add_json", text, context)', _invoke_namespace(registry)),
        "record": loop(
            "shard, meta = begin(metrics, 'add_record', {}, None, None, first); t = p(); "
            "succeed(shard, meta, None, p() - t)",
            record_ns,
        ),
        **prometheus_cases,
        **otel_cases,
        "handler": _around(
            loop('invoke("add_handler", args)', _invoke_namespace(registry)), handled
        ),
    }
    if bridge is not None:
        cases["bridge"] = bridge
    timings = interleave(cases, sizes.repeats, sizes.target_s)
    ops = timings.operations

    def value(name: str) -> float:
        return ns(timings.median(name))

    def row(scenario: str, case: str, name: str, baseline: str, **extra: Any) -> Row:
        base = value(baseline) if baseline in cases else None
        return Row(
            scenario,
            case,
            value(name),
            "ns",
            baseline=_LABELS.get(baseline, ""),
            ratio=value(name) / base if base else None,
            samples=[ns(s) for s in timings.samples[name]],
            **extra,
        )

    def counted(case: str, tool: str) -> str:
        got = calls(registry, tool)
        return check(got == ops[case], f"{case}: {got} counted for {ops[case]} calls")

    overhead = value("invoke") - value("direct")
    prometheus_cost = value("prometheus") - value("direct")
    rows = [
        row("1 sync call", "direct call f(a=1, b=2)", "direct", "direct"),
        row("1 sync call", "perf_counter_ns() pair (timing floor)", "floor", "direct"),
        row("1 sync call", "pydantic validation alone", "validate", "direct"),
        row(
            "1 sync call",
            "invoke: validation + metrics, no handler",
            "invoke",
            "direct",
            check=counted("invoke", "add"),
        ),
        row(
            "1 sync call",
            "invoke, JSON string arguments and a context (as autorun calls)",
            "invoke_json",
            "direct",
            check=counted("invoke_json", "add_json"),
        ),
        Row(
            "1 sync call",
            "invoke overhead over the direct call",
            overhead,
            "ns",
            baseline="prometheus_client's cost of counting it",
            ratio=overhead / prometheus_cost if prometheus_cost > 0 else None,
            target="≤ 1.0 µs",
            met=overhead <= 1000,
        ),
        row(
            "1 sync call",
            "prometheus_client counter + histogram, labels at call time",
            "prometheus",
            "direct",
            check=prometheus_verify(ops),
        ),
        row("1 sync call", "prometheus_client, labels bound", "prometheus_bound", "direct"),
        row(
            "1 sync call",
            "OpenTelemetry SDK counter + histogram",
            "otel_sdk",
            "direct",
            check=otel_verify(ops),
        ),
        row(
            "2 record path",
            "metrics record alone (timing + counting)",
            "record",
            "floor",
            target="≤ 2x floor",
            met=value("record") <= 2 * value("floor"),
            check=counted("record", "add_record"),
        ),
        row(
            "4 telemetry",
            "invoke + one telemetry handler",
            "handler",
            "invoke",
            check=check(
                events[0] == 2 * ops["handler"] == 2 * calls(registry, "add_handler"),
                f"handler: {events[0]} events for {ops['handler']} calls",
            ),
        ),
    ]
    if bridge is not None:
        rows.append(
            row(
                "4 telemetry",
                "invoke + OpenTelemetry bridge",
                "bridge",
                "invoke",
                check=bridge_verify(ops),
            )
        )
    else:
        rows.append(Row("4 telemetry", "invoke + OpenTelemetry bridge", None, "ns", check="n/a"))
    return rows


_LABELS = {"direct": "direct call", "floor": "timing floor", "invoke": "invoke, no handler"}
