"""The Prometheus collector, served by prometheus_client and scraped over HTTP."""

from __future__ import annotations

import importlib
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

import codex_tools
from codex_tools import RetryPolicy, ToolExecutionError, ToolRegistry, tool
from codex_tools.contrib.prometheus import ToolMetricsCollector

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
    """What the collector must expose for ``snapshot``, written out from the contract."""
    expected: Samples = {}
    for name, stats in snapshot.items():
        tool_label = labels(tool=name)
        for outcome in ("success", "failure"):
            key = (f"{ns}_tool_calls_total", labels(tool=name, outcome=outcome))
            expected[key] = stats[outcome]
        expected[(f"{ns}_tool_retries_total", tool_label)] = stats["retries"]
        expected[(f"{ns}_tool_in_flight", tool_label)] = stats["in_flight"]
        expected[(f"{ns}_tool_consecutive_failures", tool_label)] = stats["consecutive_failures"]
        for quantile, key in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")):
            if stats[f"{key}_latency_ms"] is not None:
                sample = (f"{ns}_tool_latency_seconds", labels(tool=name, quantile=quantile))
                expected[sample] = stats[f"{key}_latency_ms"] / 1000
        expected[(f"{ns}_tool_latency_seconds_count", tool_label)] = (
            stats["success"] + stats["failure"]
        )
        expected[(f"{ns}_tool_latency_seconds_sum", tool_label)] = stats["total_latency_ms"] / 1000
    return expected


def test_scrape_matches_the_snapshot(endpoint: Endpoint, exercised: ToolRegistry) -> None:
    endpoint.collectors.register(ToolMetricsCollector(exercised))

    scraped = endpoint.scrape()

    snapshot = exercised.metrics()
    assert scraped == pytest.approx(expected_samples(snapshot, "codex_tools"))
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
    assert after == pytest.approx(expected_samples(exercised.metrics(), "agent"))


def test_empty_registry_exposes_no_samples(endpoint: Endpoint) -> None:
    endpoint.collectors.register(ToolMetricsCollector(ToolRegistry()))

    assert endpoint.scrape() == {}


def test_call_in_flight_is_counted_before_any_latency_exists(endpoint: Endpoint) -> None:
    registry = ToolRegistry()
    seen: list[tuple[Samples, dict[str, dict[str, Any]]]] = []

    @tool
    def scrape_myself() -> None:
        """Scrape the endpoint from inside the first call of this tool."""
        seen.append((endpoint.scrape(), registry.metrics()))

    registry.register(scrape_myself)
    endpoint.collectors.register(ToolMetricsCollector(registry))
    registry.invoke("scrape_myself", {})

    ((inside, snapshot),) = seen
    assert inside == pytest.approx(expected_samples(snapshot, "codex_tools"))
    assert samples_of(inside, "codex_tools_tool_in_flight") == {labels(tool="scrape_myself"): 1}
    assert samples_of(inside, "codex_tools_tool_latency_seconds") == {}
    assert samples_of(inside, "codex_tools_tool_latency_seconds_count") == {
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
    assert unlabelled == pytest.approx(expected_samples(exercised.metrics(), "codex_tools"))


def test_const_labels_cannot_shadow_our_labels() -> None:
    with pytest.raises(ValueError, match="tool"):
        ToolMetricsCollector(const_labels={"tool": "x"})


def test_registering_does_not_scrape_but_catches_duplicate_names() -> None:
    class CountingRegistry(ToolRegistry):
        snapshots = 0

        def metrics(self) -> dict[str, dict[str, Any]]:
            self.snapshots += 1
            return super().metrics()

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

    assert scraped == pytest.approx(expected_samples(codex_tools.metrics(), "codex_tools"))
    assert (
        samples_of(scraped, "codex_tools_tool_calls_total")[labels(tool="probe", outcome="success")]
        == 1
    )


def test_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "codex_tools.contrib.prometheus")
    for name in [
        n for n in sys.modules if n == "prometheus_client" or n.startswith("prometheus_client.")
    ]:
        monkeypatch.setitem(sys.modules, name, None)  # as if never installed

    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[prometheus\]'"):
        importlib.import_module("codex_tools.contrib.prometheus")
