"""Prometheus: a collector that reads the metrics snapshot at scrape time, and an endpoint.

Nothing runs on the tool call path: each scrape calls ``registry.metrics(buckets=True)``
once and turns the snapshot into metric families. ``serve_metrics()`` starts an HTTP
endpoint with ``/metrics`` (this collector) and ``/metrics.json`` (the snapshot with
buckets, for ``merge_metrics`` and ``codex-tools top``)::

    from codex_tools.contrib.prometheus import serve_metrics

    server = serve_metrics(port=9464)  # 127.0.0.1; port 0 picks a free one

Latency is the histogram ``codex_tools_tool_duration_seconds``, so the workers of a
server aggregate with ``sum by (tool, le)``. Its bounds (``DEFAULT_BUCKETS``) run
1-2.5-5 from 1 µs to 500 s. The snapshot's own histogram is finer (16 log buckets per
power of two); each of its buckets is counted whole under the first bound at or above
its midpoint, the value a snapshot reports for it. A call is thus on the wrong side of a
bound only when it is within 1/32 (3.1%) of that bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

try:
    from prometheus_client.exposition import choose_encoder
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
        SummaryMetricFamily,
    )
    from prometheus_client.registry import Collector, CollectorRegistry
    from prometheus_client.samples import Sample
    from prometheus_client.utils import floatToGoString
except ImportError as exc:
    raise ImportError(
        "codex_tools.contrib.prometheus needs prometheus_client: "
        "pip install 'codex-tools[prometheus]'"
    ) from exc

from codex_tools import ToolRegistry, default_registry
from codex_tools._endpoint import MetricsServer
from codex_tools._metrics import BOUND_INDEX, MIDPOINTS

__all__ = ["DEFAULT_BUCKETS", "MetricsServer", "ToolMetricsCollector", "serve_metrics"]

#: Upper bounds (seconds) of ``codex_tools_tool_duration_seconds``: 1, 2.5, 5 per decade,
#: from a microsecond (an in-process lookup) to 500 s (a long build or crawl), then +Inf.
DEFAULT_BUCKETS: tuple[float, ...] = tuple(
    float(f"{mantissa}e{exponent}") for exponent in range(-6, 3) for mantissa in ("1", "2.5", "5")
)
_go_float: Callable[[float], str] = floatToGoString  # how prometheus_client writes ``le``
_QUANTILES = (("0.5", "p50_latency_ms"), ("0.95", "p95_latency_ms"), ("0.99", "p99_latency_ms"))
_OWN_LABELS = ("tool", "outcome", "quantile", "le")


class ToolMetricsCollector(Collector):
    """Exposes a registry's per-tool metrics to ``prometheus_client``.

    ``registry`` defaults to the process-wide one. ``const_labels`` are added to every
    sample (for instance a ``pid`` label per worker process). ``buckets`` are the
    histogram's upper bounds in seconds. ``summary=True`` also exports the snapshot's
    percentiles as the summary ``codex_tools_tool_latency_seconds``: one process's
    quantiles, which no query can combine across processes.
    """

    def __init__(
        self,
        registry: ToolRegistry | None = None,
        namespace: str = "codex_tools",
        *,
        const_labels: Mapping[str, str] | None = None,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        summary: bool = False,
    ) -> None:
        self._registry = registry
        self._prefix = f"{namespace}_" if namespace else ""
        self._const = dict(const_labels or {})
        if set(self._const) & set(_OWN_LABELS):
            raise ValueError(f"const_labels may not use the labels {', '.join(_OWN_LABELS)}")
        self._bounds = [float(bound) for bound in buckets]
        if not all(0 < bound < math.inf for bound in self._bounds) or self._bounds != sorted(
            set(self._bounds)
        ):
            raise ValueError("buckets must be finite positive seconds, ascending, each once")
        self._bounds_ns = [bound * 1e9 for bound in self._bounds]
        self._les = [_go_float(bound) for bound in self._bounds] + ["+Inf"]
        self._summary = summary

    def describe(self) -> list[Metric]:
        """Empty families with our names, so that registering never scrapes."""
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        registry = self._registry if self._registry is not None else default_registry()
        families = self._families()
        calls, retries, in_flight, failing, duration = families[:5]
        const_values = list(self._const.values())
        seen: set[str] = set()
        for name, stats in sorted(registry.metrics(buckets=True).items()):
            tool = _label(name)
            if tool in seen:  # a name with a lone surrogate, escaped into another's
                continue
            seen.add(tool)
            labels = [*const_values, tool]
            calls.add_metric([*labels, "success"], stats["success"])
            calls.add_metric([*labels, "failure"], stats["failure"])
            retries.add_metric(labels, stats["retries"])
            in_flight.add_metric(labels, stats["in_flight"])
            failing.add_metric(labels, stats["consecutive_failures"])
            cumulative = self._cumulative(stats["latency_buckets"])
            duration.add_metric(
                labels,
                list(zip(self._les, cumulative, strict=True)),
                stats["total_latency_ms"] / 1e3,
            )
            if self._summary:
                named = dict(zip([*self._const, "tool"], labels, strict=True))
                _add_summary(families[5], named, stats)
        yield from families

    def _cumulative(self, buckets: Sequence[Sequence[float]]) -> list[int]:
        """The ``le`` counts of a snapshot's ``latency_buckets``: each counted whole under
        the first bound at or above its midpoint."""
        bounds = self._bounds_ns
        counts = [0] * (len(bounds) + 1)
        at = 0
        for bound_ms, count in buckets:
            midpoint = MIDPOINTS[BOUND_INDEX[bound_ms]]
            while at < len(bounds) and bounds[at] < midpoint:
                at += 1
            counts[at] += int(count)
        total = 0
        for at, count in enumerate(counts):
            total += count
            counts[at] = total
        return counts

    def _families(self) -> list[Any]:
        labels = [*self._const, "tool"]
        p = self._prefix
        families: list[Any] = [
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
            HistogramMetricFamily(
                f"{p}tool_duration_seconds",
                "Duration of tool invocations (bounds within 3.1%).",
                labels=labels,
            ),
        ]
        if self._summary:
            families.append(
                SummaryMetricFamily(
                    f"{p}tool_latency_seconds",
                    "Latency of tool invocations, this process only (quantiles within 5%).",
                    labels=labels,
                )
            )
        return families


def _label(name: str) -> str:
    """A tool name as a label value: a lone surrogate, which UTF-8 cannot carry and which
    would fail the whole scrape, is written as its ``\\udXXX`` escape."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode()
    return name


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


def serve_metrics(
    registry: ToolRegistry | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    collector: ToolMetricsCollector | None = None,
) -> MetricsServer:
    """Serve ``/metrics`` and ``/metrics.json`` over HTTP from a daemon thread.

    Returns the running :class:`MetricsServer` (``.url``, ``.port``, ``.close()``, a
    context manager). ``registry`` None reads the process-wide one; ``port`` 0 picks a
    free port; an address in use raises ``OSError``. ``collector`` replaces the default
    ``ToolMetricsCollector(registry)`` (for ``const_labels``, ``buckets``, ``summary``).
    """
    collectors = CollectorRegistry(auto_describe=True)
    collectors.register(collector or ToolMetricsCollector(registry))

    def exposition(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(collectors), content_type

    return MetricsServer(registry, host, port, exposition)
