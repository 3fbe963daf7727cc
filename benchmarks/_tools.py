"""The tools every scenario calls: two ints in, one out, so the measured cost is ours."""

from __future__ import annotations

import asyncio

from codex_tools import ToolRegistry, tool

__all__ = ["ARGS", "add", "add_async", "add_quick", "add_yielding", "calls", "fresh_registry"]

ARGS = {"a": 1, "b": 2}


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(name="add_quick", quick=True)
def add_quick(a: int, b: int) -> int:
    """Add two integers, inline in the event loop."""
    return a + b


@tool(name="add_async")
async def add_async(a: int, b: int) -> int:
    """Add two integers, as a coroutine that never suspends."""
    return a + b


@tool(name="add_yielding")
async def add_yielding(a: int, b: int) -> int:
    """Add two integers after yielding to the event loop once, as real I/O would."""
    await asyncio.sleep(0)
    return a + b


def fresh_registry() -> ToolRegistry:
    """An isolated registry holding the tools above, with no metrics yet."""
    registry = ToolRegistry()
    for each in (add, add_quick, add_async, add_yielding):
        registry.register(each)
    return registry


def calls(registry: ToolRegistry, name: str) -> int:
    """Counted calls of ``name``, after checking that none is failed or still running."""
    row = registry.metrics().get(name)
    if row is None:
        return 0
    if row["failure"] or row["in_flight"]:
        raise AssertionError(f"{name}: {row['failure']} failed, {row['in_flight']} in flight")
    return int(row["success"])
