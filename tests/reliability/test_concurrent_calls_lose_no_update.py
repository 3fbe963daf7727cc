"""Sixteen threads hammer the same and different tools with the interpreter switching
threads as often as it can: every start and end is counted, none is lost, and the total
latency is exactly the sum of the durations the telemetry reported."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from codex_tools import ToolExecutionError, ToolRegistry, telemetry, tool

THREADS = 16
CALLS = 20_000  # per thread: 320,000 invocations in all


@tool
def work(fail: bool) -> int:
    if fail:
        raise ValueError("failing on purpose")
    return 1


def _plan(thread: int, call: int) -> tuple[str, bool]:
    """Which tool a call uses and whether it fails: half go to one tool all threads
    share, half to one of four tools each shared by four threads; one in three fails."""
    name = "shared" if call % 2 else f"group-{thread % 4}"
    return name, (call * 7 + thread) % 3 == 0


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_switch_interval")
def test_sixteen_threads_of_mixed_calls_lose_no_update(registry: ToolRegistry) -> None:
    for name in ("shared", "group-0", "group-1", "group-2", "group-3"):
        registry.register(work, name=name)
    ends: list[tuple[str, str, int]] = []
    starts: list[str] = []

    def on_end(
        event: tuple[str, ...], measurements: Mapping[str, Any], meta: Mapping[str, Any], _: Any
    ) -> None:
        ends.append((meta["tool"], event[-1], measurements["duration"]))

    telemetry.attach(
        "count-starts", telemetry.TOOL_START, lambda _e, _m, meta, _c: starts.append(meta["tool"])
    )
    telemetry.attach_many("sum-durations", [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], on_end)
    barrier = threading.Barrier(THREADS)
    unexpected: list[BaseException] = []

    def run(thread: int) -> None:
        barrier.wait()
        for call in range(CALLS):
            name, fail = _plan(thread, call)
            try:
                registry.invoke(name, {"fail": fail})
            except ToolExecutionError:
                pass
            except BaseException as error:
                unexpected.append(error)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    assert unexpected == []
    planned = Counter(_plan(t, c) for t in range(THREADS) for c in range(CALLS))
    reported = Counter((name, result) for name, result, _ in ends)
    durations = Counter[str]()
    for name, _, duration in ends:
        durations[name] += duration
    snapshot = registry.metrics()
    assert sum(row["success"] + row["failure"] for row in snapshot.values()) == THREADS * CALLS
    assert Counter(starts) == Counter(name for name, _ in planned.elements())
    for name, row in snapshot.items():
        assert row["success"] == planned[name, False] == reported[name, "success"]
        assert row["failure"] == planned[name, True] == reported[name, "failure"]
        assert row["in_flight"] == 0
        assert row["total_latency_ms"] == durations[name] / 1e6
        assert row["last_error"] == {"type": "ValueError", "message": "failing on purpose"}


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_switch_interval")
def test_snapshots_taken_while_threads_call_count_only_calls_really_in_flight(
    registry: ToolRegistry,
) -> None:
    """Each invoker has at most one call running, so no snapshot may say more than four."""
    registry.register(work)
    invokers, snapshots = 4, 3_000
    done = threading.Event()
    seen: list[int] = []

    def invoke_until_done() -> None:
        while not done.is_set():
            registry.invoke("work", {"fail": False})

    pool = [threading.Thread(target=invoke_until_done) for _ in range(invokers)]
    for thread in pool:
        thread.start()
    try:
        for _ in range(snapshots):
            row = registry.metrics().get("work")
            if row is not None:
                seen.append(row["in_flight"])
    finally:
        done.set()
        for thread in pool:
            thread.join()
    assert len(seen) > snapshots // 2
    assert max(seen) <= invokers
    assert min(seen) >= 0
    assert registry.metrics()["work"]["in_flight"] == 0
