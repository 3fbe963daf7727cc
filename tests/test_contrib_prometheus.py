"""The Prometheus collector, served by prometheus_client and scraped over HTTP."""

from __future__ import annotations

import importlib
import math
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries
from prometheus_client.utils import floatToGoString

import codex_tools
from codex_tools import RetryPolicy, ToolExecutionError, ToolRegistry, tool
from codex_tools.contrib.prometheus import DEFAULT_BUCKETS, ToolMetricsCollector, serve_metrics
from histogram_support import under

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Endpoint:
    url: str
    collectors: CollectorRegistry

    def scrape(self) -> Samples:
        # No proxy: the endpoint is on loopback whatever the environment says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    collectors = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=collectors)
    yield Endpoint(f"http://127.0.0.1:{server.server_port}/metrics", collectors)
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def samples_of(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def labels(**kwargs: str) -> frozenset[tuple[str, str]]:
    return frozenset(kwargs.items())


@pytest.fixture
def exercised() -> ToolRegistry:
    """Tools with known outcomes: two successes, a failure, and a retried success."""
    registry = ToolRegistry()
    attempts: list[int] = []

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    def explode() -> None:
        """Always fail."""
        raise RuntimeError("boom")

    @tool(retry=RetryPolicy(max_attempts=3))
    def flaky() -> str:
        """Fail on the first attempt only."""
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("again")
        return "ok"

    for each in (add, explode, flaky):
        registry.register(each)
    registry.invoke("add", {"a": 1, "b": 2})
    registry.invoke("add", {"a": 3, "b": 4})
    with pytest.raises(ToolExecutionError):
        registry.invoke("explode", {})
    with pytest.raises(ToolExecutionError):
        registry.invoke("explode", {})
    registry.invoke("flaky", {})
    return registry


def expected_samples(snapshot: dict[str, dict[str, Any]], ns: str) -> Samples:
    """What the collector must expose for ``snapshot`` (with buckets), written out from the
    contract: each log bucket counted under the first bound at or above its midpoint."""
    expected: Samples = {}
    for name, stats in snapshot.items():
        tool_label = labels(tool=name)
        for outcome in ("success", "failure"):
            key = (f"{ns}_tool_calls_total", labels(tool=name, outcome=outcome))
            expected[key] = stats[outcome]
        expected[(f"{ns}_tool_retries_total", tool_label)] = stats["retries"]
        expected[(f"{ns}_tool_in_flight", tool_label)] = stats["in_flight"]
        expected[(f"{ns}_tool_consecutive_failures", tool_label)] = stats["consecutive_failures"]
        buckets = stats["latency_buckets"]
        for bound in (*DEFAULT_BUCKETS, math.inf):
            le = "+Inf" if bound == math.inf else floatToGoString(bound)
            key = (f"{ns}_tool_duration_seconds_bucket", labels(tool=name, le=le))
            expected[key] = under(buckets, bound)
        count = sum(n for _, n in buckets)
        expected[(f"{ns}_tool_duration_seconds_count", tool_label)] = count
        expected[(f"{ns}_tool_duration_seconds_sum", tool_label)] = stats["total_latency_ms"] / 1e3
    return expected


def test_scrape_matches_the_snapshot(endpoint: Endpoint, exercised: ToolRegistry) -> None:
    endpoint.collectors.register(ToolMetricsCollector(exercised))

    scraped = endpoint.scrape()

    snapshot = exercised.metrics(buckets=True)
    assert scraped == pytest.approx(expected_samples(snapshot, "codex_tools"))
    histogram = samples_of(scraped, "codex_tools_tool_duration_seconds_count")
    assert histogram[labels(tool="add")] == 2
    calls = samples_of(scraped, "codex_tools_tool_calls_total")
    assert calls[labels(tool="explode", outcome="failure")] == 2
    assert calls[labels(tool="flaky", outcome="failure")] == 1
    assert calls[labels(tool="flaky", outcome="success")] == 1
    assert samples_of(scraped, "codex_tools_tool_retries_total")[labels(tool="flaky")] == 1
    failing = samples_of(scraped, "codex_tools_tool_consecutive_failures")
    assert failing[labels(tool="explode")] == 2


def test_each_scrape_reads_the_metrics_of_that_moment(
    endpoint: Endpoint, exercised: ToolRegistry
) -> None:
    endpoint.collectors.register(ToolMetricsCollector(exercised, namespace="agent"))
    before = endpoint.scrape()

    exercised.invoke("add", {"a": 5, "b": 6})
    after = endpoint.scrape()

    key = ("agent_tool_calls_total", labels(tool="add", outcome="success"))
    assert (before[key], after[key]) == (2, 3)
    assert after == pytest.approx(expected_samples(exercised.metrics(buckets=True), "agent"))


def test_empty_registry_exposes_no_samples(endpoint: Endpoint) -> None:
    endpoint.collectors.register(ToolMetricsCollector(ToolRegistry()))

    assert endpoint.scrape() == {}


def test_call_in_flight_is_counted_before_any_latency_exists(endpoint: Endpoint) -> None:
    registry = ToolRegistry()
    seen: list[tuple[Samples, dict[str, dict[str, Any]]]] = []

    @tool
    def scrape_myself() -> None:
        """Scrape the endpoint from inside the first call of this tool."""
        seen.append((endpoint.scrape(), registry.metrics(buckets=True)))

    registry.register(scrape_myself)
    endpoint.collectors.register(ToolMetricsCollector(registry))
    registry.invoke("scrape_myself", {})

    ((inside, snapshot),) = seen
    assert inside == pytest.approx(expected_samples(snapshot, "codex_tools"))
    assert samples_of(inside, "codex_tools_tool_in_flight") == {labels(tool="scrape_myself"): 1}
    assert samples_of(inside, "codex_tools_tool_duration_seconds_count") == {
        labels(tool="scrape_myself"): 0
    }
    after = samples_of(endpoint.scrape(), "codex_tools_tool_in_flight")
    assert after == {labels(tool="scrape_myself"): 0}


def test_const_labels_tell_worker_processes_apart(
    endpoint: Endpoint, exercised: ToolRegistry
) -> None:
    endpoint.collectors.register(ToolMetricsCollector(exercised, const_labels={"pid": "4242"}))

    scraped = endpoint.scrape()

    assert scraped
    assert all(dict(sample_labels)["pid"] == "4242" for _, sample_labels in scraped)
    unlabelled = {
        (name, frozenset(kv for kv in sample_labels if kv[0] != "pid")): value
        for (name, sample_labels), value in scraped.items()
    }
    assert unlabelled == pytest.approx(
        expected_samples(exercised.metrics(buckets=True), "codex_tools")
    )


def test_const_labels_cannot_shadow_our_labels() -> None:
    with pytest.raises(ValueError, match="tool"):
        ToolMetricsCollector(const_labels={"tool": "x"})


def test_registering_does_not_scrape_but_catches_duplicate_names() -> None:
    class CountingRegistry(ToolRegistry):
        snapshots = 0

        def metrics(self, *, buckets: bool = False) -> dict[str, dict[str, Any]]:
            self.snapshots += 1
            return super().metrics(buckets=buckets)

    tools = CountingRegistry()
    collectors = CollectorRegistry(auto_describe=True)
    collectors.register(ToolMetricsCollector(tools))

    assert tools.snapshots == 0
    with pytest.raises(DuplicateTimeseries):
        collectors.register(ToolMetricsCollector(tools))


def test_default_registry_is_read_when_none_is_given(
    endpoint: Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(codex_tools, "_default", ToolRegistry())  # leave the real one alone
    codex_tools.register(lambda: 1, name="probe")
    codex_tools.invoke("probe", {})
    endpoint.collectors.register(ToolMetricsCollector())

    scraped = endpoint.scrape()

    assert scraped == pytest.approx(
        expected_samples(codex_tools.metrics(buckets=True), "codex_tools")
    )
    assert (
        samples_of(scraped, "codex_tools_tool_calls_total")[labels(tool="probe", outcome="success")]
        == 1
    )


def test_missing_extra_names_the_pip_install(uninstalled: Callable[[str, str], None]) -> None:
    uninstalled("prometheus_client", "codex_tools.contrib.prometheus")
    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[prometheus\]'"):
        importlib.import_module("codex_tools.contrib.prometheus")


def with_durations(durations_ns: list[int], name: str = "timed") -> ToolRegistry:
    """A registry whose tool ended calls of exactly these durations. Internal on purpose:
    real calls cannot be made to last a chosen number of nanoseconds."""
    registry = ToolRegistry()
    for ns in durations_ns:
        shard = registry._metrics.shard(name)
        shard.started += 1
        shard.record(ns, ok=True)
    return registry


def le_counts(registry: ToolRegistry, collector: ToolMetricsCollector | None = None) -> Any:
    collectors = CollectorRegistry()
    collectors.register(collector or ToolMetricsCollector(registry))
    [family] = [f for f in collectors.collect() if f.name == "codex_tools_tool_duration_seconds"]
    return {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}


class TestHistogram:
    def test_a_log_bucket_straddling_a_bound_goes_where_its_midpoint_is(self) -> None:
        # 990 ns is in [960, 992) ns, midpoint 976: under 1 µs. 1,000 ns is in [992, 1024),
        # midpoint 1,008: over 1 µs although the call itself took exactly 1 µs.
        counts = le_counts(with_durations([5, 990, 1_000, 2_400, 600 * 10**9]))
        assert (counts["1e-06"], counts["2.5e-06"], counts["500.0"]) == (2, 4, 4)
        assert counts["+Inf"] == 5

    @settings(max_examples=300, deadline=None)
    @given(st.integers(min_value=0, max_value=10**12))
    def test_a_call_lands_under_a_bound_within_a_32nd_of_its_own_duration(self, ns: int) -> None:
        counts = le_counts(with_durations([ns]))
        bounds = [*DEFAULT_BUCKETS, math.inf]
        first = next(bound for bound in bounds if counts[floatToGoString(bound)] == 1)
        below = [bound for bound in bounds if bound < first]
        seconds = ns / 1e9
        assert seconds <= first * (1 + 1 / 32)
        assert not below or seconds * (1 + 1 / 32) >= below[-1]
        assert all(counts[floatToGoString(b)] == (b >= first) for b in bounds)

    def test_bounds_run_from_a_microsecond_to_minutes(self) -> None:
        assert DEFAULT_BUCKETS[:4] == (1e-6, 2.5e-6, 5e-6, 1e-5)
        assert DEFAULT_BUCKETS[-3:] == (100.0, 250.0, 500.0)
        assert list(DEFAULT_BUCKETS) == sorted(set(DEFAULT_BUCKETS))

    def test_custom_bounds_are_used_and_checked(self) -> None:
        registry = with_durations([10**6, 10**8])  # 1 ms and 100 ms
        counts = le_counts(registry, ToolMetricsCollector(registry, buckets=[0.01, 1]))
        assert counts == {"0.01": 1, "1.0": 2, "+Inf": 2}
        for wrong in ([1, 0.5], [0.5, 0.5], [0.0], [math.inf], [math.nan]):
            with pytest.raises(ValueError, match="buckets must be"):
                ToolMetricsCollector(buckets=wrong)

    def test_the_summary_is_there_only_when_asked_for(
        self, endpoint: Endpoint, exercised: ToolRegistry
    ) -> None:
        endpoint.collectors.register(ToolMetricsCollector(exercised, summary=True))
        scraped = endpoint.scrape()
        snapshot = exercised.metrics()
        quantiles = samples_of(scraped, "codex_tools_tool_latency_seconds")
        assert quantiles[labels(tool="add", quantile="0.95")] == pytest.approx(
            snapshot["add"]["p95_latency_ms"] / 1e3
        )
        counts = samples_of(scraped, "codex_tools_tool_latency_seconds_count")
        assert counts[labels(tool="explode")] == 2
        plain = CollectorRegistry()
        plain.register(ToolMetricsCollector(exercised))
        assert not any(f.type == "summary" for f in plain.collect())


HOSTILE_NAMES = [
    "lone\udc80surrogate",
    "lone\\udc80surrogate",  # what the one above is escaped into: kept apart
    'say "hi"',
    "two\nlines",
    "back\\slash",
    "list[bold]",
    "\x00\x1b[31m",
    "x" * 5_000,
]


def test_hostile_tool_names_never_break_a_scrape_for_the_others() -> None:
    registry = ToolRegistry()
    for name in [*HOSTILE_NAMES, "plain"]:
        registry.register(lambda: None, name=name)
        registry.invoke(name)
    with serve_metrics(registry) as server:
        text = Endpoint(f"{server.url}/metrics", CollectorRegistry()).scrape()
        request = urllib.request.Request(
            f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request) as r:
            openmetrics = r.read().decode()
    calls = samples_of(text, "codex_tools_tool_calls_total")
    tools = {dict(key)["tool"] for key in calls}
    assert tools == {"plain", *HOSTILE_NAMES[1:]}  # the surrogate's escape is taken already
    assert all(calls[labels(tool=t, outcome="success")] == 1 for t in tools)
    parsed = list(openmetrics_families(openmetrics))
    counts = [f for f in parsed if f.name == "codex_tools_tool_calls"]
    assert len({s.labels["tool"] for s in counts[0].samples}) == len(tools)


def test_a_lone_surrogate_is_escaped_in_the_label() -> None:
    registry = ToolRegistry()
    registry.register(lambda: None, name="a\udc80")
    registry.invoke("a\udc80")
    collectors = CollectorRegistry()
    collectors.register(ToolMetricsCollector(registry))
    [calls] = [f for f in collectors.collect() if f.name == "codex_tools_tool_calls"]
    assert {s.labels["tool"] for s in calls.samples} == {"a\\udc80"}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=4, unique=True))
def test_any_tool_names_give_an_exposition_that_parses_with_every_tool(names: list[str]) -> None:
    registry = ToolRegistry()
    for name in names:
        registry.measure(name).succeed(None)
    collectors = CollectorRegistry()
    collectors.register(ToolMetricsCollector(registry))

    parsed = list(text_string_to_metric_families(generate_latest(collectors).decode()))

    [calls] = [family for family in parsed if family.name == "codex_tools_tool_calls"]
    tools = {sample.labels["tool"] for sample in calls.samples}
    escaped = {name.encode("utf-8", "backslashreplace").decode() for name in names}
    assert tools == escaped
