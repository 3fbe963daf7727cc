"""Scenarios 3 and 7: ``ainvoke`` against awaiting the tool directly, one call at a time
and 50,000 at once in one event loop."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks._harness import Check, Row, Run, Sizes, interleave, ns
from benchmarks._tools import ARGS, add, add_async, add_yielding, calls, fresh_registry

__all__ = ["run"]


def _in_loop(
    loop: asyncio.AbstractEventLoop, step: Callable[[], Awaitable[Any]], clock: Any
) -> Run:
    """``run(n)``: ``n`` sequential awaits of ``step()`` inside ``loop``, timed in the loop."""

    async def body(n: int) -> float:
        start = clock()
        for _ in range(n):
            await step()
        return float(clock() - start)

    return lambda n: loop.run_until_complete(body(n))


def run(sizes: Sizes, check: Check) -> list[Row]:
    registry = fresh_registry()
    loop = asyncio.new_event_loop()
    try:
        return _sequential(registry, loop, sizes, check) + _concurrent(registry, loop, sizes, check)
    finally:
        loop.close()


def _sequential(
    registry: Any, loop: asyncio.AbstractEventLoop, sizes: Sizes, check: Check
) -> list[Row]:
    ainvoke = registry.ainvoke
    cpu, wall = time.thread_time, time.perf_counter
    cases = {
        "await_direct": _in_loop(loop, lambda: add_async.fn(a=1, b=2), cpu),
        "ainvoke_async": _in_loop(loop, lambda: ainvoke("add_async", ARGS), cpu),
        "ainvoke_quick": _in_loop(loop, lambda: ainvoke("add_quick", ARGS), cpu),
        "to_thread_direct": _in_loop(loop, lambda: asyncio.to_thread(add.fn, a=1, b=2), wall),
        "ainvoke_thread": _in_loop(loop, lambda: ainvoke("add", ARGS), wall),
    }
    timings = interleave(cases, sizes.repeats, sizes.target_s)
    ops = timings.operations

    def value(name: str) -> float:
        return ns(timings.median(name))

    def counted(case: str, tool: str) -> str:
        got = calls(registry, tool)
        return check(got == ops[case], f"{case}: {got} counted for {ops[case]} calls")

    def row(case: str, name: str, baseline: str, label: str, **extra: Any) -> Row:
        return Row(
            "3 async call",
            case,
            value(name),
            "ns",
            baseline=label,
            ratio=value(name) / value(baseline),
            samples=[ns(s) for s in timings.samples[name]],
            **extra,
        )

    overhead = value("ainvoke_async") - value("await_direct")
    return [
        row("await tool.fn(...) directly", "await_direct", "await_direct", "await direct"),
        row(
            "await ainvoke, async tool",
            "ainvoke_async",
            "await_direct",
            "await direct",
            check=counted("ainvoke_async", "add_async"),
        ),
        Row(
            "3 async call",
            "ainvoke overhead over awaiting directly",
            overhead,
            "ns",
            baseline="await direct",
            ratio=overhead / value("await_direct"),
            target="≤ 2.0 µs",
            met=overhead <= 2000,
        ),
        row(
            "await ainvoke, sync quick tool (inline)",
            "ainvoke_quick",
            "await_direct",
            "await direct",
            check=counted("ainvoke_quick", "add_quick"),
        ),
        row(
            "await asyncio.to_thread(fn) directly (wall)",
            "to_thread_direct",
            "to_thread_direct",
            "to_thread direct",
        ),
        row(
            "await ainvoke, sync tool: thread hop (wall)",
            "ainvoke_thread",
            "to_thread_direct",
            "to_thread direct",
            check=counted("ainvoke_thread", "add"),
        ),
    ]


def _concurrent(
    registry: Any, loop: asyncio.AbstractEventLoop, sizes: Sizes, check: Check
) -> list[Row]:
    """Many calls in flight at once: the cost is per call, the check that all ended."""
    n = sizes.concurrent
    ainvoke = registry.ainvoke

    async def gather(make: Callable[[], Awaitable[int]]) -> float:
        start = time.perf_counter()
        results = await asyncio.gather(*(make() for _ in range(n)))
        elapsed = time.perf_counter() - start
        if results != [3] * n:
            raise AssertionError("a concurrent call returned a wrong result")
        return elapsed / n

    direct: list[float] = []
    through: list[float] = []
    rounds = max(3, sizes.repeats // 3)
    for _ in range(rounds):
        direct.append(loop.run_until_complete(gather(lambda: add_yielding.fn(a=1, b=2))))
        through.append(loop.run_until_complete(gather(lambda: ainvoke("add_yielding", ARGS))))
    counted = calls(registry, "add_yielding")
    low_direct, low_through = statistics.median(direct), statistics.median(through)
    return [
        Row(
            "7 concurrency",
            f"{n:,} concurrent awaits of the tool directly, per call (wall)",
            ns(low_direct),
            "ns",
            baseline="gather direct",
            ratio=1.0,
            samples=[ns(s) for s in direct],
        ),
        Row(
            "7 concurrency",
            f"{n:,} concurrent ainvoke in one loop, per call (wall)",
            ns(low_through),
            "ns",
            baseline="gather direct",
            ratio=low_through / low_direct,
            samples=[ns(s) for s in through],
            check=check(
                counted == rounds * n, f"concurrent: {counted} counted for {rounds * n} calls"
            ),
        ),
    ]
