"""Three real worker processes, each making a known mix of calls and serving its endpoint:
their snapshots merge into what one process that saw every call reports, and their
Prometheus histograms add up by ``le``."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from codex_tools import merge_metrics
from codex_tools._metrics import MetricsStore
from codex_tools.contrib.prometheus import DEFAULT_BUCKETS
from histogram_support import under

WORKER = Path(__file__).with_name("metrics_worker.py")
WORKERS = ((0, 60), (1, 45), (2, 30))  # (seed, rounds of calls): see metrics_worker.py
TIMEOUT = 60.0
EXACT = (
    "success",
    "failure",
    "min_latency_ms",
    "max_latency_ms",
    "latency_buckets",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "success_rate",
)
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@contextmanager
def running(specs: tuple[tuple[int, int], ...]) -> Iterator[list[dict[str, Any]]]:
    """Start the workers together; yield each one's report; then let them all end."""
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(seed), str(calls)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed, calls in specs
    ]
    try:
        reports = []
        for process in processes:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], TIMEOUT)
            assert ready, "a worker did not report in time"
            reports.append(json.loads(process.stdout.readline()))
        yield reports
    finally:
        for process in processes:
            if process.stdin:
                process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout:
                process.stdout.close()


def get(url: str) -> str:
    with _opener.open(url, timeout=10) as response:
        return str(response.read().decode())


def expected_counts(seed: int, calls: int) -> dict[str, tuple[int, int]]:
    """(success, failure) per tool of one worker, from its mix alone."""
    rounds = range(calls)
    return {
        "fast": (calls, 0),
        "nap": (sum(1 for n in rounds if n % 3 == seed % 3), 0),
        "fail": (0, sum(1 for n in rounds if n % 4 == 0)),
    }


def reference(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The snapshot of one process that saw every call of every worker."""
    store = MetricsStore()
    for report in reports:
        for tool, calls in report["durations"].items():
            for ns, ok in calls:
                shard = store.shard(tool)
                shard.started += 1
                shard.record(ns, ok)
    return store.snapshot(buckets=True)


def summed_by_tool_and_le(scrapes: list[str]) -> dict[tuple[str, str], float]:
    summed: dict[tuple[str, str], float] = {}
    for text in scrapes:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "codex_tools_tool_duration_seconds_bucket":
                    key = (sample.labels["tool"], sample.labels["le"])
                    summed[key] = summed.get(key, 0) + sample.value
    return summed


@pytest.mark.slow
def test_three_workers_merge_exactly_and_their_histograms_add_up_by_le() -> None:
    with running(WORKERS) as reports:
        snapshots = [json.loads(get(f"{r['url']}/metrics.json")) for r in reports]
        scrapes = [get(f"{r['url']}/metrics") for r in reports]
    merged = merge_metrics(snapshots)

    # Counts: exactly the sum of the known mixes.
    for tool in ("fast", "nap", "fail"):
        success = sum(expected_counts(*spec)[tool][0] for spec in WORKERS)
        failure = sum(expected_counts(*spec)[tool][1] for spec in WORKERS)
        assert (merged[tool]["success"], merged[tool]["failure"]) == (success, failure), tool
        assert merged[tool]["in_flight"] == 0

    # Percentiles, min, max, buckets: what one process fed every call's duration reports.
    single = reference(reports)
    assert merged.keys() == single.keys()
    for tool, row in single.items():
        for key in EXACT:
            assert merged[tool][key] == row[key], (tool, key)
    assert merged["nap"]["p50_latency_ms"] >= 0.5  # the durations are the real ones

    # Prometheus: each worker's histogram, summed by (tool, le), is the merged one.
    summed = summed_by_tool_and_le(scrapes)
    for tool, row in merged.items():
        assert summed[(tool, "+Inf")] == row["success"] + row["failure"]
        for bound in DEFAULT_BUCKETS:
            le = floatToGoString(bound)
            assert summed[(tool, le)] == under(row["latency_buckets"], bound), (tool, le)
