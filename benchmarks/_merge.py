"""Scenario 8: across processes. A snapshot with buckets, merging ten of them, and one
refresh of ``codex-tools top`` over ten live endpoints."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

from rich.console import Console

from benchmarks._harness import Check, Row, Sizes, Timings, interleave, loop, ns
from benchmarks._scale import _many_tools
from benchmarks._tools import ARGS
from codex_tools import ToolRegistry, merge_metrics
from codex_tools._cli.top import Watch, fetch, fetch_all

__all__ = ["run"]

TOOLS = 1_000
CALLS_PER_TOOL = 32  # real latencies spread each tool over a dozen buckets or more
PROCESSES = 10
ENDPOINTS = 10
ENDPOINT_TOOLS = 50  # a large MCP server


def run(sizes: Sizes, check: Check) -> list[Row]:
    tools = 100 if sizes.quick else TOOLS
    registry = _many_tools(tools)
    for _ in range(CALLS_PER_TOOL - 4):  # _many_tools made 4 calls of each
        for name in registry.metrics():
            registry.invoke(name, ARGS)
    return _snapshot(registry, tools, sizes, check) + _top(sizes, check)


def _snapshot(registry: ToolRegistry, tools: int, sizes: Sizes, check: Check) -> list[Row]:
    with_buckets = registry.metrics(buckets=True)
    texts = [json.dumps(with_buckets) for _ in range(PROCESSES)]  # as ten endpoints send it
    snapshots = [json.loads(text) for text in texts]
    cases = {
        "plain": loop("metrics()", {"metrics": registry.metrics}),
        "buckets": loop("metrics(buckets=True)", {"metrics": registry.metrics}),
        "merge": loop("merge(s)", {"merge": merge_metrics, "s": snapshots}),
        "loads": loop("[loads(t) for t in texts]", {"loads": json.loads, "texts": texts}),
    }
    timings = interleave(cases, max(3, sizes.repeats // 2), sizes.target_s, start=1)
    plain, buckets = timings.median("plain"), timings.median("buckets")
    merge = timings.median("merge")
    merged = merge_metrics(snapshots)
    calls = sum(row["success"] for row in merged.values())
    single = registry.metrics()
    same = all(
        merged[name]["p99_latency_ms"] == row["p99_latency_ms"] for name, row in single.items()
    )
    buckets_held = sum(len(row["latency_buckets"]) for row in with_buckets.values())
    return [
        _row(
            timings,
            "buckets",
            f"metrics(buckets=True) of {tools:,} tools, {buckets_held / tools:.1f} buckets each",
            ("metrics()", "plain"),
            "≤ 2x metrics()",
            met=buckets <= 2 * plain,
        ),
        _row(
            timings,
            "merge",
            f"merge_metrics of {PROCESSES} snapshots of {tools:,} tools",
            ("json.loads of them", "loads"),
            "≤ 50 ms",
            met=merge <= 0.050,
            check=check(
                calls == PROCESSES * tools * CALLS_PER_TOOL and same,
                f"merge: {calls} calls, percentiles {'equal' if same else 'differ'}",
            ),
        ),
    ]


def _row(
    timings: Timings,
    key: str,
    case: str,
    baseline: tuple[str, str],
    target: str,
    *,
    met: bool,
    check: str = "ok",
) -> Row:
    """The row of case ``key``, its ratio over the case ``baseline`` names (label, key)."""
    value = timings.median(key)
    label, over = baseline
    return Row(
        "8 processes",
        case,
        ns(value),
        "ns",
        baseline=label,
        ratio=value / timings.median(over),
        target=target,
        met=met,
        check=check,
        samples=[ns(s) for s in timings.samples[key]],
    )


# One endpoint process: a registry of tools with calls made, served until stdin closes.
_ENDPOINT = f"""
import sys
from codex_tools import ToolRegistry
from codex_tools.contrib.prometheus import serve_metrics
registry = ToolRegistry()
for n in range({ENDPOINT_TOOLS}):
    registry.register(lambda a, b: a + b, name=f"tool_{{n}}")
    for _ in range(4):
        registry.invoke(f"tool_{{n}}", {{"a": 1, "b": 2}})
with serve_metrics(registry) as server:
    print(server.url, flush=True)
    sys.stdin.read()
"""


def _top(sizes: Sizes, check: Check) -> list[Row]:
    """Fetch, check, merge and render ten endpoints, each its own process, wall clock
    (threads and sockets); rendered for a 100 x 30 terminal, as the live view is."""
    servers = [
        subprocess.Popen(
            [sys.executable, "-c", _ENDPOINT], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(ENDPOINTS)
    ]
    try:
        urls = [f"{server.stdout.readline().decode().strip()}/metrics.json" for server in servers]
        watch = Watch(urls)
        console = Console(file=io.StringIO(), width=100, height=30)

        def refresh() -> None:
            watch.refresh(fetch_all(urls, 2.0), time.monotonic())
            console.print(watch.render(100, "calls", 30))

        cases = {
            "refresh": loop("refresh()", {"refresh": refresh}, clock=time.perf_counter),
            "one": loop(
                "fetch(url, 2.0)", {"fetch": fetch, "url": urls[0]}, clock=time.perf_counter
            ),
        }
        timings = interleave(cases, max(3, sizes.repeats // 3), sizes.target_s, start=1)
    finally:
        for server in servers:
            server.communicate()  # closes its stdin: it ends
    value = timings.median("refresh")
    calls = sum(row["success"] for row in watch.merged.values())
    return [
        _row(
            timings,
            "refresh",
            f"codex-tools top: one refresh of {ENDPOINTS} endpoint processes, "
            f"{ENDPOINT_TOOLS} tools each, 100x30 (wall)",
            ("fetching one endpoint", "one"),
            "≤ 100 ms",
            met=value <= 0.100,
            check=check(
                watch.status.count(None) == ENDPOINTS and calls == ENDPOINTS * ENDPOINT_TOOLS * 4,
                f"top: {watch.status.count(None)} up, {calls} calls",
            ),
        )
    ]
