from __future__ import annotations

import asyncio
import random
import threading

import pytest

from codex_tools import ToolError, ToolRegistry, telemetry, tool


@tool
def work(fail: bool) -> int:
    if fail:
        raise ValueError("failing on purpose")
    return 1


@pytest.mark.usefixtures("tiny_switch_interval")
def test_sixteen_threads_lose_no_update(registry: ToolRegistry) -> None:
    registry.register(work)
    registry.register(work, name="other")
    threads, calls = 16, 500
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        for i in range(calls):
            try:
                registry.invoke("work" if i % 2 else "other", {"fail": (i + index) % 5 == 0})
            except ToolError:
                pass
            except BaseException as error:
                errors.append(error)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    snapshot = registry.metrics()
    expected_failures = {
        name: sum(
            1
            for n in range(threads)
            for i in range(calls)
            if (i % 2 == (name == "work")) and (i + n) % 5 == 0
        )
        for name in ("work", "other")
    }
    for name, row in snapshot.items():
        assert row["success"] + row["failure"] == threads * calls // 2
        assert row["failure"] == expected_failures[name]
        assert row["in_flight"] == 0


async def test_ten_thousand_concurrent_ainvokes_with_cancellations(
    registry: ToolRegistry,
) -> None:
    gate = asyncio.Event()

    @tool
    async def wait_for_gate(fail: bool) -> int:
        await gate.wait()
        if fail:
            raise ValueError("failing on purpose")
        return 1

    registry.register(wait_for_gate)
    rng = random.Random(1)
    tasks = [
        asyncio.create_task(registry.ainvoke("wait_for_gate", {"fail": rng.random() < 0.2}))
        for _ in range(10_000)
    ]
    await asyncio.sleep(0)  # every task starts and waits at the gate
    assert registry.metrics()["wait_for_gate"]["in_flight"] == 10_000
    cancelled = rng.sample(tasks, 1_000)
    for task in cancelled:
        task.cancel()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    ok = sum(1 for r in results if r == 1)
    failed = sum(1 for r in results if isinstance(r, ToolError))
    was_cancelled = sum(1 for r in results if isinstance(r, asyncio.CancelledError))
    assert was_cancelled == 1_000
    row = registry.metrics()["wait_for_gate"]
    assert row["in_flight"] == 0
    assert row["success"] == ok
    assert row["failure"] == failed + was_cancelled
    assert row["success"] + row["failure"] == 10_000


def test_events_are_paired_under_threads(registry: ToolRegistry) -> None:
    registry.register(work)
    with telemetry.capture() as events:
        pool = [
            threading.Thread(
                target=lambda: [registry.invoke("work", {"fail": False}) for _ in range(200)]
            )
            for _ in range(4)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    starts = [e.metadata["span_token"] for e in events if e.event == telemetry.TOOL_START]
    ends = [e.metadata["span_token"] for e in events if e.event == telemetry.TOOL_SUCCESS]
    assert len(starts) == 800
    assert sorted(starts) == sorted(ends)
    assert len(set(starts)) == 800
