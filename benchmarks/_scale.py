"""Scenarios 5 and 6: many threads on one tool, many tools in one snapshot, many calls
on one tool's memory."""

from __future__ import annotations

import copy
import gc
import json
import statistics
import threading
import time
import tracemalloc

from benchmarks._harness import Check, Row, Sizes, interleave, loop, ns
from benchmarks._tools import ARGS, add, calls
from codex_tools import Tool, ToolRegistry, tool
from codex_tools._metrics import bucket_index, bucket_value

__all__ = ["run"]

THREADS = (1, 2, 4)
SNAPSHOT_THREADS = 4
_HOUR_NS = 3_600 * 10**9


def run(sizes: Sizes, check: Check) -> list[Row]:
    return _threads(sizes, check) + _snapshots(sizes, check) + _memory(sizes, check)


def _threads(sizes: Sizes, check: Check) -> list[Row]:
    """Aggregate throughput of ``k`` threads sharing one tool, wall clock, rounds
    interleaved over ``k``; afterwards every call must be counted exactly once."""
    registry = ToolRegistry()
    for k in THREADS:
        registry.register(add, name=f"add_{k}")
    seconds: dict[int, list[float]] = {k: [] for k in THREADS}
    total = sizes.thread_calls
    for _ in range(max(3, sizes.repeats // 2)):
        for k in THREADS:
            seconds[k].append(_hammer(registry, f"add_{k}", k, total // k))
    rounds = len(seconds[1])
    per_second = {k: total / statistics.median(seconds[k]) for k in THREADS}
    rows = []
    for k in THREADS:
        counted = calls(registry, f"add_{k}")
        expected = rounds * k * (total // k)
        rows.append(
            Row(
                "5 threads",
                f"{k} thread{'s' * (k > 1)} invoking one tool: calls/s, aggregate (wall)",
                per_second[k],
                "calls/s",
                baseline="1 thread",
                ratio=per_second[k] / per_second[1],
                target="≥ 0.8x 1 thread" if k == 4 else "",
                met=per_second[k] >= 0.8 * per_second[1] if k == 4 else None,
                check=check(counted == expected, f"{k} threads: {counted} counted, {expected}"),
                samples=[total / s for s in seconds[k]],
            )
        )
    return rows


def _hammer(registry: ToolRegistry, name: str, threads: int, each: int) -> float:
    """Seconds for ``threads`` threads to make ``each`` calls apiece, released together."""
    go = threading.Event()
    invoke = registry.invoke

    def work() -> None:
        go.wait()
        for _ in range(each):
            invoke(name, ARGS)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    go.set()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start


def _many_tools(count: int) -> ToolRegistry:
    """``count`` tools, each called once from each of several threads (one shard each).

    The tools are copies of one definition under new names: building ``count`` pydantic
    validators would take most of the run and changes nothing a snapshot reads.
    """
    registry = ToolRegistry()
    names = [f"tool_{i}" for i in range(count)]
    for name in names:
        clone: Tool = copy.copy(add)
        clone.name = name
        registry.register(clone)

    together = threading.Barrier(SNAPSHOT_THREADS)

    def work() -> None:
        together.wait()  # all alive at once: distinct thread ids, so distinct shards
        for name in names:
            registry.invoke(name, ARGS)
        together.wait()

    workers = [threading.Thread(target=work) for _ in range(SNAPSHOT_THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return registry


def _snapshots(sizes: Sizes, check: Check) -> list[Row]:
    """``metrics()`` next to ``json.dumps`` of what it returns: what a scrape does next."""
    registries = {count: _many_tools(count) for count in sizes.tool_counts}
    snapshots = {count: registry.metrics() for count, registry in registries.items()}
    cases = {}
    for count, registry in registries.items():
        cases[f"metrics_{count}"] = loop("metrics()", {"metrics": registry.metrics})
        cases[f"dumps_{count}"] = loop("dumps(s)", {"dumps": json.dumps, "s": snapshots[count]})
    timings = interleave(cases, max(3, sizes.repeats // 2), sizes.target_s, start=1)
    rows = []
    for count, snapshot in snapshots.items():
        counted = sum(row["success"] for row in snapshot.values())
        expected = count * SNAPSHOT_THREADS
        value = timings.median(f"metrics_{count}")
        rows.append(
            Row(
                "6 scale",
                f"metrics() of {count:,} tools, {SNAPSHOT_THREADS} threads' calls each",
                ns(value),
                "ns",
                baseline="json.dumps of it",
                ratio=value / timings.median(f"dumps_{count}"),
                target="≤ 5 ms" if count == 1000 else "",
                met=value <= 0.005 if count == 1000 else None,
                check=check(
                    len(snapshot) == count and counted == expected,
                    f"metrics() of {count}: {len(snapshot)} rows, {counted} calls, {expected}",
                ),
                samples=[ns(s) for s in timings.samples[f"metrics_{count}"]],
            )
        )
    return rows


def _memory(sizes: Sizes, check: Check) -> list[Row]:
    """Python heap held by one registered tool and its metrics, by number of calls.

    The latencies are real, so more calls touch more of the histogram's tail buckets
    for the first time; the last figure fills every bucket up to an hour, the most any
    number of calls can hold.
    """
    few, many = sizes.memory_calls
    marks = (few, many // 10, many)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        registry = ToolRegistry()
        registry.register(tool(name="measured")(add.fn))
        held: dict[int, int] = {}
        done = 0
        invoke = registry.invoke
        for mark in marks:
            for _ in range(mark - done):
                invoke("measured", ARGS)
            done = mark
            gc.collect()
            held[mark] = tracemalloc.get_traced_memory()[0] - before
        counted = check(
            calls(registry, "measured") == many,
            f"memory: {calls(registry, 'measured')} counted, {many} calls",
        )
        for shard in registry._metrics.stats("measured").shards.values():
            for index in range(bucket_index(_HOUR_NS) + 1):  # (counts checked above)
                shard.record(int(bucket_value(index)), True)
        gc.collect()
        ceiling = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    rows = [
        Row(
            "6 scale",
            f"memory per tool after {mark:,} calls (tracemalloc)",
            float(held[mark]),
            "B",
            baseline=f"after {few:,} calls",
            ratio=held[mark] / held[few],
            target="bounded: ≤ the ceiling below" if mark == many else "",
            met=held[many] <= ceiling if mark == many else None,
            check=counted if mark == many else "ok",
        )
        for mark in marks
    ]
    rows.append(
        Row(
            "6 scale",
            "memory per tool, ceiling: every latency bucket up to 1 h hit",
            float(ceiling),
            "B",
            baseline=f"after {few:,} calls",
            ratio=ceiling / held[few],
        )
    )
    return rows
