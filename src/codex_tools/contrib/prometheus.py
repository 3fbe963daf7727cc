"""Prometheus collector: the metrics snapshot, read at scrape time.

Nothing runs on the tool call path: each scrape calls ``registry.metrics()`` once
and turns the snapshot into metric families::

    from prometheus_client import REGISTRY, start_http_server
    from codex_tools.contrib.prometheus import ToolMetricsCollector

    REGISTRY.register(ToolMetricsCollector())
    start_http_server(9464)

The snapshot belongs to one process; with several workers, scrape each one and
tell them apart with ``const_labels={"pid": str(os.getpid())}`` (or export
through OpenTelemetry instead).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.samples import Sample
except ImportError as exc:
    raise ImportError(
        "codex_tools.contrib.prometheus needs prometheus_client: "
        "pip install 'codex-tools[prometheus]'"
    ) from exc

from codex_tools import ToolRegistry, default_registry

__all__ = ["ToolMetricsCollector"]

_QUANTILES = (("0.5", "p50_latency_ms"), ("0.95", "p95_latency_ms"), ("0.99", "p99_latency_ms"))


class ToolMetricsCollector(Collector):
    """Exposes a registry's per-tool metrics to ``prometheus_client``.

    ``registry`` defaults to the process-wide one. ``const_labels`` are added to
    every sample (for instance a ``pid`` label per worker process).
    """

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        namespace: str = "codex_tools",
        *,
        const_labels: Mapping[str, str] | None = None,
    ) -> None:
        self._registry = registry
        self._prefix = f"{namespace}_" if namespace else ""
        self._const = dict(const_labels or {})
        if "tool" in self._const or "outcome" in self._const or "quantile" in self._const:
            raise ValueError("const_labels may not use the labels 'tool', 'outcome', 'quantile'")

    def describe(self) -> list[Metric]:
        """Empty families with our names, so that registering never scrapes."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        registry = self._registry if self._registry is not None else default_registry()
        families = self._families()
        calls, retries, in_flight, failing, latency = families
        const_names = list(self._const)
        const_values = list(self._const.values())
        for name, stats in sorted(registry.metrics().items()):
            labels = [*const_values, name]
            calls.add_metric([*labels, "success"], stats["success"])
            calls.add_metric([*labels, "failure"], stats["failure"])
            retries.add_metric(labels, stats["retries"])
            in_flight.add_metric(labels, stats["in_flight"])
            failing.add_metric(labels, stats["consecutive_failures"])
            _add_summary(latency, dict(zip([*const_names, "tool"], labels, strict=True)), stats)
        yield from families

    def _families(
        self,
    ) -> tuple[
        CounterMetricFamily,
        CounterMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        SummaryMetricFamily,
    ]:
        labels = [*self._const, "tool"]
        p = self._prefix
        return (
            CounterMetricFamily(
                f"{p}tool_calls_total",
                "Tool invocations that ended, by outcome.",
                labels=[*labels, "outcome"],
            ),
            CounterMetricFamily(
                f"{p}tool_retries_total", "Tool invocations tagged retry=True.", labels=labels
            ),
            GaugeMetricFamily(
                f"{p}tool_in_flight", "Tool invocations started and not yet ended.", labels=labels
            ),
            GaugeMetricFamily(
                f"{p}tool_consecutive_failures",
                "Failures since the tool's last success.",
                labels=labels,
            ),
            SummaryMetricFamily(
                f"{p}tool_latency_seconds",
                "Latency of tool invocations (quantiles within 5%).",
                labels=labels,
            ),
        )


def _add_summary(
    family: SummaryMetricFamily, labels: dict[str, str], stats: Mapping[str, Any]
) -> None:
    """SummaryMetricFamily.add_metric takes no quantiles, so those samples are added here."""
    for quantile, key in _QUANTILES:
        if stats[key] is not None:
            family.samples.append(
                Sample(family.name, {**labels, "quantile": quantile}, stats[key] / 1000.0)
            )
    family.samples.append(
        Sample(f"{family.name}_count", labels, stats["success"] + stats["failure"])
    )
    family.samples.append(Sample(f"{family.name}_sum", labels, stats["total_latency_ms"] / 1000.0))
