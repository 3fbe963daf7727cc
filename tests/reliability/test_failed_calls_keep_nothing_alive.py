"""Failures must not keep what the tool raised alive: an agent's tools fail with
exceptions holding response bodies, dataframes, open files. The metrics keep only a
bounded description of the last error, and the call path must create no reference
cycle that leaves the exception waiting for the cyclic garbage collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from codex_tools import RetryPolicy, Tool, ToolError, ToolRegistry, telemetry, tool

from ._support import rss_bytes

MB = 1 << 20


class HeavyError(Exception):
    """Holds a payload whose pages are really written, so a leak shows in the RSS."""

    alive = 0

    def __init__(self, size: int) -> None:
        super().__init__(f"failed holding {size} bytes")
        self.payload = b"\x01" * size
        HeavyError.alive += 1

    def __del__(self) -> None:
        HeavyError.alive -= 1


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    """Only reference counting frees objects inside the block."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _raise(size: int) -> None:
    raise HeavyError(size)


async def _araise(size: int) -> None:
    await asyncio.sleep(0)
    raise HeavyError(size)


def sync_tool() -> Tool:
    return tool(name="fails")(_raise)


def async_tool() -> Tool:
    return tool(name="fails")(_araise)


def sync_tool_with_timeout() -> Tool:
    return tool(name="fails", timeout=30)(_raise)


def quick_tool() -> Tool:
    return tool(name="fails", quick=True)(_raise)


def retried_tool() -> Tool:
    return tool(name="fails", retry=RetryPolicy(max_attempts=2))(_raise)


def tool_whose_on_error_raises() -> Tool:
    def on_error(error: BaseException, _: object) -> None:
        raise ValueError("handled badly") from error

    return tool(name="fails", on_error=on_error)(_raise)


DRIVERS: list[tuple[str, Callable[[], Tool]]] = [
    ("invoke", sync_tool),
    ("invoke", async_tool),
    ("invoke", sync_tool_with_timeout),
    ("invoke-in-loop", async_tool),
    ("ainvoke", sync_tool),
    ("ainvoke", async_tool),
    ("ainvoke", sync_tool_with_timeout),
    ("ainvoke", quick_tool),
    ("invoke", retried_tool),
    ("ainvoke", retried_tool),
    ("invoke", tool_whose_on_error_raises),
    ("ainvoke", tool_whose_on_error_raises),
]


def _fail_once(registry: ToolRegistry, driver: str) -> str:
    """Fail one call and drop the error (no ``pytest.raises``: it keeps the traceback)."""
    if driver == "invoke":
        try:
            registry.invoke("fails", {"size": 1000})
        except ToolError as error:
            return type(error).__name__
        return "no error"

    async def call() -> str:
        try:
            if driver == "invoke-in-loop":  # the async tool then runs in a thread's own loop
                registry.invoke("fails", {"size": 1000})
            else:
                await registry.ainvoke("fails", {"size": 1000})
        except ToolError as error:
            return type(error).__name__
        return "no error"

    coroutine: Coroutine[Any, Any, str] = call()
    return asyncio.run(coroutine)


@pytest.mark.usefixtures("no_cyclic_gc")
@pytest.mark.parametrize("listening", [False, True], ids=["no-handler", "handler"])
@pytest.mark.parametrize(("driver", "make"), DRIVERS, ids=[f"{d}-{m.__name__}" for d, m in DRIVERS])
def test_failed_call_frees_its_exception_as_soon_as_the_caller_drops_it(
    registry: ToolRegistry, driver: str, make: Callable[[], Tool], listening: bool
) -> None:
    registry.register(make())
    seen: list[str] = []
    if listening:
        telemetry.attach_many(
            "reads-the-error",
            telemetry.TOOL_EVENTS,
            lambda _e, _m, meta, _c: seen.append(type(meta.get("error")).__name__),
        )
    before = HeavyError.alive
    assert _fail_once(registry, driver) == "ToolExecutionError"
    assert HeavyError.alive == before
    attempts = registry.metrics()["fails"]["failure"]
    assert attempts == (2 if make is retried_tool else 1)
    if listening:
        assert len(seen) == 2 * attempts


@pytest.mark.slow
def test_a_hundred_thousand_failures_holding_large_objects_leave_rss_flat(
    registry: ToolRegistry,
) -> None:
    registry.register(sync_tool())
    calls, size = 100_000, 256 * 1024
    for _ in range(1_000):  # warm up allocator pools and the metrics entry
        with pytest.raises(ToolError):
            registry.invoke("fails", {"size": size})
    gc.collect()
    baseline = peak = rss_bytes()
    most_alive = 0
    sampled: list[weakref.ref[BaseException]] = []
    for n in range(calls):
        try:
            registry.invoke("fails", {"size": size})
        except ToolError as error:
            if n % 1_000 == 0 and error.__cause__ is not None:
                sampled.append(weakref.ref(error.__cause__))
        most_alive = max(most_alive, HeavyError.alive)
        if n % 100 == 0:
            peak = max(peak, rss_bytes())
    growth = max(peak, rss_bytes()) - baseline
    print(f"RSS growth over {calls:,} failures holding {size // 1024} KB: {growth / MB:.2f} MB")
    assert most_alive == 0
    assert [ref for ref in sampled if ref() is not None] == []
    gc.collect()
    assert HeavyError.alive == 0
    assert growth < 10 * MB
    row = registry.metrics()["fails"]
    assert row["failure"] == calls + 1_000
    assert row["in_flight"] == 0
    assert row["last_error"] == {"type": "HeavyError", "message": f"failed holding {size} bytes"}


@pytest.mark.slow
def test_ten_thousand_deregistered_tools_leave_no_metrics_after_a_reset(
    registry: ToolRegistry,
) -> None:
    functions: list[weakref.ref[Callable[[int], int]]] = []
    for n in range(10_000):

        def identity(a: int) -> int:
            return a

        functions.append(weakref.ref(identity))
        handle = registry.register(identity, name=f"tool-{n}")
        assert registry.invoke(handle.name, {"a": n}) == n
        registry.deregister(handle)
        del identity, handle
    assert len(registry.metrics()) == 10_000
    registry.reset_metrics()
    assert registry.metrics() == {}
    assert registry.tools() == []
    gc.collect()
    assert [ref for ref in functions if ref() is not None] == []
