"""Twenty thousand concurrent ``ainvoke`` calls, cancelled and timed out at random:
each call that started ends exactly once in the metrics, with the outcome its caller
saw, and ``success + failure + in_flight == started`` holds at every moment between."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from codex_tools import ToolError, ToolRegistry, telemetry, tool

CALLS = 20_000


@tool
async def nap(seconds: float, fail: bool) -> str:
    await asyncio.sleep(seconds)
    if fail:
        raise ValueError("failing on purpose")
    return "ok"


@tool(quick=True)
def inline(seconds: float, fail: bool) -> str:
    if fail:
        raise ValueError("failing on purpose")
    return "ok"


@tool
def threaded(seconds: float, fail: bool) -> str:
    time.sleep(seconds / 10)
    if fail:
        raise ValueError("failing on purpose")
    return "ok"


def _check_invariant(registry: ToolRegistry, started: Counter[str]) -> int:
    """Assert the contract's invariant for every tool; the calls in flight now."""
    in_flight = 0
    for name, row in registry.metrics().items():
        assert row["success"] + row["failure"] + row["in_flight"] == started[name], name
        in_flight += row["in_flight"]
    return in_flight


@pytest.mark.slow
async def test_twenty_thousand_cancelled_and_timed_out_calls_are_each_counted_once(
    registry: ToolRegistry,
) -> None:
    registry.register(nap)
    registry.register(tool(name="deadline", timeout=0.025)(nap.fn))  # the tool's own timeout
    registry.register(inline)
    registry.register(threaded)
    started: Counter[str] = Counter()
    start_ids: list[int] = []
    ends: dict[int, str] = {}

    def on_start(_e: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        started[meta["tool"]] += 1
        start_ids.append(meta["call_id"])

    def on_end(_e: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        assert meta["call_id"] not in ends, "a call ended twice"
        ends[meta["call_id"]] = meta["result"]

    telemetry.attach("storm-starts", telemetry.TOOL_START, on_start)
    telemetry.attach_many("storm-ends", [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], on_end)

    rng = random.Random(6)
    names = ["nap"] * 70 + ["deadline"] * 15 + ["inline"] * 13 + ["threaded"] * 2

    async def call(n: int, deadline: float | None) -> str:
        args = {"seconds": rng.uniform(0, 0.05), "fail": rng.random() < 0.2}
        work = registry.ainvoke(rng.choice(names), args, {"call_id": n})
        if deadline is None:
            return str(await work)
        return str(await asyncio.wait_for(work, deadline))  # the caller's own timeout

    tasks: list[asyncio.Task[str]] = []
    cancellable: list[asyncio.Task[str]] = []
    checks = busy_checks = most_in_flight = 0
    for first in range(0, CALLS, 500):  # waves, so calls begin while others run and end
        for n in range(first, first + 500):
            # Cancelling a wait_for() can drop a result its inner task already returned
            # (asyncio's doing, not ours), so a caller with a timeout is never cancelled.
            deadline = rng.uniform(0, 0.04) if rng.random() < 0.1 else None
            tasks.append(asyncio.create_task(call(n, deadline)))
            if deadline is None:
                cancellable.append(tasks[-1])
        for victim in rng.sample(cancellable[-2_000:], 100):  # not begun, running, or done
            victim.cancel()
        await asyncio.sleep(0.001)
        checks += 1
        in_flight = _check_invariant(registry, started)
        busy_checks += in_flight > 0
        most_in_flight = max(most_in_flight, in_flight)
    pending: set[asyncio.Task[str]] = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.002)
        checks += 1
        in_flight = _check_invariant(registry, started)
        busy_checks += in_flight > 0
        most_in_flight = max(most_in_flight, in_flight)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert _check_invariant(registry, started) == 0
    assert busy_checks > 0, "the invariant was never checked with calls in flight"
    assert sorted(start_ids) == sorted(ends), "a call started and never ended, or vice versa"
    assert len(set(start_ids)) == len(start_ids)
    for n, outcome in enumerate(outcomes):
        if n not in ends:  # cancelled before the call began: not an invocation
            assert isinstance(outcome, asyncio.CancelledError | TimeoutError), outcome
        elif outcome == "ok":
            assert ends[n] == "ok"
        else:
            assert isinstance(outcome, ToolError | asyncio.CancelledError | TimeoutError), outcome
            assert ends[n] == "error"
    snapshot = registry.metrics()
    assert sum(row["success"] for row in snapshot.values()) == outcomes.count("ok")
    assert sum(row["success"] + row["failure"] for row in snapshot.values()) == len(ends)
    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    print(
        f"{len(ends):,} calls began; outcomes {dict(kinds)}; invariant checked {checks} times, "
        f"{busy_checks} with calls in flight (up to {most_in_flight})"
    )
    for kind in ("str", "ToolExecutionError", "ToolTimeoutError", "TimeoutError", "CancelledError"):
        assert kinds[kind] > 0, f"the storm had no {kind}"
    assert len(ends) < CALLS, "no call was cancelled before it began"
