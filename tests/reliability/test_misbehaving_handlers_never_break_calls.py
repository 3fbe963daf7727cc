"""Telemetry handlers are user code running inside every call. One that raises, blocks,
calls back into the registry or rewires the handler table must not break the call, the
counts, or the other handlers, as in Erlang ``:telemetry``'s own suite."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from codex_tools import ToolExecutionError, ToolRegistry, telemetry, tool

HANDLER_FAILURE_MEASUREMENTS = {"monotonic_time", "system_time"}
HANDLER_FAILURE_METADATA = {
    "event_name",
    "handler_id",
    "handler_config",
    "kind",
    "reason",
    "stacktrace",
}


@tool
def add(a: int, b: int) -> int:
    return a + b


class BrokenHandlerError(Exception):
    pass


def _raise(_e: Any, _m: Any, _meta: Any, _c: Any) -> None:
    raise BrokenHandlerError("handler bug")


def _ids() -> set[str]:
    return {info.id for info in telemetry.list_handlers()}


def test_raising_handler_is_detached_from_every_event_and_reported(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register(add)
    good: list[tuple[str, ...]] = []
    telemetry.attach_many(
        "broken", [*telemetry.TOOL_EVENTS, ("app", "other")], _raise, config={"k": 1}
    )
    telemetry.attach_many(
        "good", telemetry.TOOL_EVENTS, lambda event, _m, _meta, _c: good.append(event)
    )
    with (
        caplog.at_level(logging.ERROR, logger="codex_tools.telemetry"),
        telemetry.capture(telemetry.HANDLER_FAILURE) as failures,
    ):
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
        telemetry.execute(("app", "other"), {}, {})
    assert "broken" not in _ids()
    assert good == [telemetry.TOOL_START, telemetry.TOOL_SUCCESS] * 2
    assert len(failures) == 1
    failure = failures[0]
    assert set(failure.measurements) == HANDLER_FAILURE_MEASUREMENTS
    assert set(failure.metadata) == HANDLER_FAILURE_METADATA
    assert failure.metadata["event_name"] == telemetry.TOOL_START
    assert failure.metadata["handler_id"] == "broken"
    assert failure.metadata["handler_config"] == {"k": 1}
    assert failure.metadata["kind"] == "error"
    assert isinstance(failure.metadata["reason"], BrokenHandlerError)
    assert "handler bug" in failure.metadata["stacktrace"]
    assert "'broken'" in caplog.text
    row = registry.metrics()["add"]
    assert (row["success"], row["failure"], row["in_flight"]) == (2, 0, 0)


def test_raising_handler_racing_in_many_threads_is_reported_once_per_thread_at_most(
    registry: ToolRegistry,
) -> None:
    registry.register(add)
    threads, calls = 8, 200
    telemetry.attach_many("broken", telemetry.TOOL_EVENTS, _raise)
    barrier = threading.Barrier(threads)
    results: list[int] = []

    def run() -> None:
        barrier.wait()
        results.extend(registry.invoke("add", {"a": 1, "b": 1}) for _ in range(calls))

    with telemetry.capture(telemetry.HANDLER_FAILURE) as failures:
        pool = [threading.Thread(target=run) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    assert results == [2] * threads * calls
    assert 1 <= len(failures) <= threads
    assert "broken" not in _ids()
    assert registry.metrics()["add"]["success"] == threads * calls


def test_handlers_of_the_failure_report_that_raise_end_the_chain(registry: ToolRegistry) -> None:
    registry.register(add)
    telemetry.attach("broken", telemetry.TOOL_START, _raise)
    telemetry.attach("broken-reporter", telemetry.HANDLER_FAILURE, _raise)
    assert registry.invoke("add", {"a": 2, "b": 2}) == 4
    assert {"broken", "broken-reporter"}.isdisjoint(_ids())


def test_handler_whose_error_cannot_be_printed_is_still_detached_and_reported(
    registry: ToolRegistry,
) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str for you")

    def raise_unprintable(_e: Any, _m: Any, _meta: Any, _c: Any) -> None:
        raise Unprintable

    registry.register(add)
    telemetry.attach("unprintable", telemetry.TOOL_SUCCESS, raise_unprintable)
    with telemetry.capture(telemetry.HANDLER_FAILURE) as failures:
        assert registry.invoke("add", {"a": 1, "b": 0}) == 1
    assert "unprintable" not in _ids()
    assert isinstance(failures[0].metadata["reason"], Unprintable)
    assert "Unprintable" in failures[0].metadata["stacktrace"]


@pytest.mark.parametrize("event", telemetry.TOOL_EVENTS, ids=lambda event: event[-1])
def test_a_handler_raising_system_exit_is_detached_like_any_failing_handler(
    registry: ToolRegistry, event: tuple[str, ...]
) -> None:
    """``sys.exit`` in a handler (a CLI's reporting code) must not end the host."""

    def exits(_e: Any, _m: Any, _meta: Any, _c: Any) -> None:
        raise SystemExit(1)

    def fails() -> None:
        raise ValueError("so the failure event fires")

    registry.register(add)
    registry.register(fails)
    telemetry.attach("exits", event, exits)
    with telemetry.capture(telemetry.HANDLER_FAILURE) as failures:
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
        with pytest.raises(ToolExecutionError):
            registry.invoke("fails")
    assert "exits" not in _ids()
    assert [type(f.metadata["reason"]) for f in failures] == [SystemExit]
    assert registry.metrics()["add"]["success"] == 1


@pytest.mark.parametrize("driver", ["invoke", "ainvoke"])
def test_interrupt_raised_in_a_start_handler_is_counted_as_a_failure(
    registry: ToolRegistry, driver: str
) -> None:
    """Ctrl-C lands wherever the main thread is, slow handlers included: the interrupt
    reaches the caller unchanged and the call still ends, as a failure."""

    def interrupted(_e: Any, _m: Any, _meta: Any, _c: Any) -> None:
        raise KeyboardInterrupt

    registry.register(add)
    telemetry.attach("interrupted", telemetry.TOOL_START, interrupted)

    def call() -> object:
        args = {"a": 1, "b": 2}
        if driver == "invoke":
            return registry.invoke("add", args)
        return asyncio.run(registry.ainvoke("add", args))

    with telemetry.capture(telemetry.TOOL_FAILURE) as ends, pytest.raises(KeyboardInterrupt):
        call()
    row = registry.metrics()["add"]
    assert (row["success"], row["failure"], row["in_flight"]) == (0, 1, 0)
    assert row["last_error"] == {"type": "KeyboardInterrupt", "message": ""}
    assert [type(end.metadata["error"]) for end in ends] == [KeyboardInterrupt]


def test_slow_handler_blocks_only_the_call_it_runs_in(registry: ToolRegistry) -> None:
    registry.register(add)
    entered, release = threading.Event(), threading.Event()

    def slow_for_one_thread(_e: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        if meta["thread_id"] == "slow":
            entered.set()
            assert release.wait(30)

    telemetry.attach_many("slow", telemetry.TOOL_EVENTS, slow_for_one_thread)
    slow = threading.Thread(
        target=registry.invoke, args=("add", {"a": 1, "b": 1}, {"thread_id": "slow"})
    )
    slow.start()
    try:
        assert entered.wait(30)
        fast = threading.Thread(
            target=lambda: [registry.invoke("add", {"a": 1, "b": 1}) for _ in range(1_000)]
        )
        fast.start()
        fast.join(30)
        assert not fast.is_alive()
        telemetry.attach("meanwhile", ("app", "event"), lambda *_: None)  # the table is free
        assert telemetry.detach("meanwhile")
        registry.reset_metrics()
        assert slow.is_alive()
    finally:
        release.set()
        slow.join(30)
    assert not slow.is_alive()


def test_handler_may_invoke_a_tool_and_emit_an_event(registry: ToolRegistry) -> None:
    registry.register(add)
    registry.register(add, name="inner")
    nested: list[Any] = []

    def reenter(event: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        if meta["tool"] == "add":
            nested.append(registry.invoke("inner", {"a": 10, "b": 1}))
            telemetry.execute(("app", "nested"), {"n": 1}, {"from": event[-1]})

    telemetry.attach_many("reenter", telemetry.TOOL_EVENTS, reenter)
    with telemetry.capture(("app", "nested")) as emitted:
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
    assert nested == [11, 11]
    assert [event.metadata["from"] for event in emitted] == ["start", "success"]
    snapshot = registry.metrics()
    assert snapshot["add"]["success"] == 1
    assert snapshot["inner"]["success"] == 2
    assert snapshot["add"]["in_flight"] == snapshot["inner"]["in_flight"] == 0


async def test_handler_may_invoke_a_tool_while_an_async_call_dispatches(
    registry: ToolRegistry,
) -> None:
    registry.register(add)
    registry.register(add, name="inner")

    def reenter(_e: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        if meta["tool"] == "add":
            registry.invoke("inner", {"a": 1, "b": 1})

    telemetry.attach("reenter", telemetry.TOOL_SUCCESS, reenter)
    assert await registry.ainvoke("add", {"a": 1, "b": 2}) == 3
    assert registry.metrics()["inner"]["success"] == 1


def test_handlers_attached_or_detached_during_dispatch_apply_from_the_next_event() -> None:
    calls: list[str] = []

    def rewire(_e: Any, _m: Any, _meta: Any, _c: Any) -> None:
        calls.append("rewire")
        if telemetry.detach("victim"):
            telemetry.attach("newcomer", ("app", "event"), lambda *_: calls.append("newcomer"))

    telemetry.attach("rewire", ("app", "event"), rewire)
    telemetry.attach("victim", ("app", "event"), lambda *_: calls.append("victim"))
    telemetry.execute(("app", "event"), {}, {})
    assert sorted(calls) == ["rewire", "victim"]  # the list as it was when the event fired
    calls.clear()
    telemetry.execute(("app", "event"), {}, {})
    assert sorted(calls) == ["newcomer", "rewire"]


def test_handler_detaching_itself_during_dispatch_runs_once(registry: ToolRegistry) -> None:
    registry.register(add)
    seen: list[tuple[str, ...]] = []

    def once(event: tuple[str, ...], _m: Any, _meta: Any, _c: Any) -> None:
        seen.append(event)
        telemetry.detach("once")

    telemetry.attach_many("once", telemetry.TOOL_EVENTS, once)
    registry.invoke("add", {"a": 1, "b": 1})
    registry.invoke("add", {"a": 1, "b": 1})
    assert seen == [telemetry.TOOL_START]


def test_a_broken_logging_setup_does_not_reach_the_emitter_either(registry: ToolRegistry) -> None:
    """The failure report logs; a logging filter that raises must not undo the promise
    that the emitter never sees a handler's error and the other handlers still run."""

    class BrokenFilter(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            raise RuntimeError("filter bug")

    registry.register(add)
    seen: list[str] = []
    telemetry.attach("broken", telemetry.TOOL_SUCCESS, _raise)
    telemetry.attach("good", telemetry.TOOL_SUCCESS, lambda *_: seen.append("good"))
    log = logging.getLogger("codex_tools.telemetry")
    broken = BrokenFilter()
    log.addFilter(broken)
    try:
        with telemetry.capture(telemetry.HANDLER_FAILURE) as failures:
            assert registry.invoke("add", {"a": 1, "b": 2}) == 3
    finally:
        log.removeFilter(broken)
    assert seen == ["good"]
    assert len(failures) == 1
    assert "broken" not in _ids()
