"""Registering, deregistering, resetting and attaching handlers while other threads
invoke: callers see only the contract's errors, every snapshot is consistent, the counts
after the last reset are those of the calls made after it, and a call already running
when its tool goes away finishes and is counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest

from codex_tools import (
    ToolAlreadyRegisteredError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolRegistry,
    telemetry,
    tool,
)

INVOKERS = 6
AFTER_RESET = 2_000  # calls each invoker makes once it has seen the last reset


@tool
def work(fail: bool) -> int:
    if fail:
        raise ValueError("failing on purpose")
    return 1


def _spawn(target: Callable[[], None], count: int = 1) -> list[threading.Thread]:
    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


@pytest.mark.slow
@pytest.mark.usefixtures("tiny_switch_interval")
def test_registry_changes_racing_with_calls_raise_only_contract_errors(
    registry: ToolRegistry,
) -> None:
    registry.register(work, name="stable")
    churning = False  # mutators run while this is true
    churning_lock = threading.Lock()
    last_reset_begins, last_reset_done = threading.Event(), threading.Event()
    unexpected: list[BaseException] = []
    after_reset: Counter[tuple[str, bool]] = Counter()  # calls begun after the last reset
    across_reset: Counter[str] = Counter()  # calls that may have overlapped it

    def guarded(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                body()
            except BaseException as error:
                unexpected.append(error)

        return run

    def invoker() -> None:
        rng = random.Random()
        mine: Counter[tuple[str, bool]] = Counter()
        overlapping: Counter[str] = Counter()
        while sum(mine.values()) < AFTER_RESET:
            after = last_reset_done.is_set()  # read before the call begins
            name = rng.choice(("stable", "churn"))
            fail = rng.random() < 0.3
            try:
                registry.invoke(name, {"fail": fail})
            except ToolExecutionError:
                pass
            except ToolNotFoundError:
                continue  # "churn" was away: not an invocation
            if after:
                mine[name, fail] += 1
            elif last_reset_begins.is_set():  # read after the call ended
                overlapping[name] += 1
        with churning_lock:
            after_reset.update(mine)
            across_reset.update(overlapping)

    def register_and_deregister() -> None:
        while churning:
            try:
                handle = registry.register(work, name="churn")
            except ToolAlreadyRegisteredError:
                continue
            with contextlib.suppress(ToolNotFoundError):
                registry.deregister(handle)

    def reset_and_snapshot() -> None:
        while churning:
            registry.reset_metrics()
            snapshot = registry.metrics()
            json.dumps(snapshot)
            for name, row in snapshot.items():
                assert 0 <= row["in_flight"] <= INVOKERS, (name, row)
                assert row["success"] >= 0
                assert row["failure"] >= 0

    def attach_and_detach() -> None:
        seen: list[str] = []
        while churning:
            handler_id = random.choice(("a", "b", "c"))
            with contextlib.suppress(ValueError):  # the contract's answer to an id in use
                telemetry.attach_many(
                    f"race-{handler_id}",
                    telemetry.TOOL_EVENTS,
                    lambda _e, _m, meta, _c: seen.append(meta["tool"]),
                )
            telemetry.detach(f"race-{random.choice(('a', 'b', 'c'))}")
            del seen[:]

    churning = True
    mutators = _spawn(guarded(register_and_deregister), 2)
    mutators += _spawn(guarded(reset_and_snapshot), 2)
    mutators += _spawn(guarded(attach_and_detach), 2)
    invokers = _spawn(guarded(invoker), INVOKERS)
    threading.Event().wait(1.0)  # let them race for a while
    churning = False
    for thread in mutators:
        thread.join()
    if registry.tools()[-1].name != "churn":
        registry.register(work, name="churn")
    last_reset_begins.set()
    registry.reset_metrics()  # the last reset, with the invokers still running
    last_reset_done.set()
    for thread in invokers:
        thread.join()

    assert unexpected == []
    snapshot = registry.metrics()
    for name in ("stable", "churn"):
        row = snapshot[name]
        assert row["in_flight"] == 0
        # Every call begun after the reset is counted; one that overlapped it may
        # land on either side (the reset promises nothing about those).
        extra_success = row["success"] - after_reset[name, False]
        extra_failure = row["failure"] - after_reset[name, True]
        assert extra_success >= 0
        assert extra_failure >= 0
        assert extra_success + extra_failure <= across_reset[name]


def _blocking_tool(entered: threading.Event, release: threading.Event) -> Callable[[], str]:
    def blocking() -> str:
        entered.set()
        assert release.wait(30)
        return "finished"

    return blocking


@pytest.mark.parametrize("change", ["deregister", "replace", "reset"])
def test_a_call_running_while_its_tool_changes_finishes_and_is_counted(
    registry: ToolRegistry, change: str
) -> None:
    entered, release = threading.Event(), threading.Event()
    registry.register(_blocking_tool(entered, release), name="blocking")
    outcome: list[object] = []
    caller = threading.Thread(target=lambda: outcome.append(registry.invoke("blocking")))
    caller.start()
    assert entered.wait(30)
    assert registry.metrics()["blocking"]["in_flight"] == 1
    if change == "deregister":
        registry.deregister("blocking")
    elif change == "replace":
        registry.register(lambda: "new", name="blocking", replace=True)
    else:
        registry.reset_metrics()
        assert registry.metrics() == {}
    release.set()
    caller.join(30)
    assert outcome == ["finished"]
    snapshot = registry.metrics()
    if change == "reset":  # in flight at the reset: not counted after it, never negative
        assert snapshot == {}
        return
    assert snapshot["blocking"]["success"] == 1
    assert snapshot["blocking"]["in_flight"] == 0
    if change == "deregister":
        with pytest.raises(ToolNotFoundError):
            registry.invoke("blocking")
        assert registry.metrics() == snapshot
    else:
        assert registry.invoke("blocking") == "new"
        assert registry.metrics()["blocking"]["success"] == 2


async def test_an_async_call_running_while_its_tool_is_deregistered_is_counted(
    registry: ToolRegistry,
) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    @tool
    async def waiting() -> str:
        entered.set()
        await release.wait()
        return "finished"

    registry.register(waiting)
    call = asyncio.create_task(registry.ainvoke("waiting"))
    await asyncio.wait_for(entered.wait(), 30)
    registry.deregister("waiting")
    release.set()
    assert await asyncio.wait_for(call, 30) == "finished"
    assert registry.metrics()["waiting"]["success"] == 1
    assert registry.metrics()["waiting"]["in_flight"] == 0
