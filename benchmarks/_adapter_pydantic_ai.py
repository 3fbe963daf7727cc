"""pydantic-ai adapter: what ``RegistryToolset`` and ``Metered`` add to a tool call.

Each case is pydantic-ai's own ``ToolManager.handle_call`` (argument validation, the
capability hooks, the toolset call) of a trivial async tool, on the tool manager of a
real agent run, so that every hook a run has is there. The baseline is the same tool as
the agent's own function tool, without us. pydantic-ai charges any capability, even one
that does nothing, for copying the run context into each of its hooks; ``Metered`` is
measured against such a no-op capability, which is itself measured against none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.capabilities import AbstractCapability
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tool_manager import ToolManager

from benchmarks._harness import Check, Row, Run, Sizes, interleave, ns
from benchmarks._tools import ARGS, add_async, calls, fresh_registry
from codex_tools import ToolRegistry
from codex_tools.contrib.pydantic_ai import Metered, RegistryToolset

__all__ = ["run"]

SCENARIO = "pydantic-ai"


async def add(a: int, b: int) -> int:
    """Add two integers, as a coroutine that never suspends."""
    return a + b


def _tool_manager(loop: asyncio.AbstractEventLoop, **agent_options: Any) -> ToolManager[Any]:
    """The tool manager of a real run of an agent with these options, kept after the run."""
    grabbed: list[ToolManager[Any]] = []

    def grab(ctx: RunContext[Any]) -> None:
        assert ctx.tool_manager is not None
        grabbed.append(ctx.tool_manager)

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("grab", {}, tool_call_id="grab")])
        return ModelResponse(parts=[TextPart("done")])

    agent = Agent(FunctionModel(model), **agent_options)
    agent.tool(grab)
    loop.run_until_complete(agent.run("go"))
    return grabbed[0]


def _calls(loop: asyncio.AbstractEventLoop, manager: ToolManager[Any], tool: str) -> Run:
    """``run(n)``: ``n`` sequential ``handle_call``s of ``tool``, timed on the CPU clock."""
    part = ToolCallPart(tool, dict(ARGS), tool_call_id="bench")
    handle_call: Callable[..., Any] = manager.handle_call

    async def body(n: int) -> float:
        start = time.thread_time()
        for _ in range(n):
            await handle_call(part)
        return time.thread_time() - start

    return lambda n: loop.run_until_complete(body(n))


class _Nothing(AbstractCapability[Any]):
    """A capability that does nothing: what pydantic-ai charges for any capability."""


def run(sizes: Sizes, check: Check) -> list[Row]:
    registry, metered = fresh_registry(), ToolRegistry()
    loop = asyncio.new_event_loop()
    try:
        cases = {
            "plain": _calls(loop, _tool_manager(loop, tools=[add]), "add"),
            "toolset": _calls(
                loop, _tool_manager(loop, toolsets=[RegistryToolset(registry)]), add_async.name
            ),
            "nothing": _calls(
                loop, _tool_manager(loop, tools=[add], capabilities=[_Nothing()]), "add"
            ),
            "metered": _calls(
                loop, _tool_manager(loop, tools=[add], capabilities=[Metered(metered)]), "add"
            ),
        }
        timings = interleave(cases, sizes.repeats, sizes.target_s)
    finally:
        loop.close()

    def row(case: str, name: str, baseline: str, label: str, counted: int | None = None) -> Row:
        value, base = ns(timings.median(name)), ns(timings.median(baseline))
        extra: dict[str, Any] = {}
        if counted is not None:
            added, ops = value - base, timings.operations[name]
            extra = {
                "target": f"adds <= max(5%, 2 µs): {added / 1e3:.2f} µs",
                "met": added <= max(0.05 * base, 2_000.0),
                "check": check(counted == ops, f"{name}: {counted} counted of {ops} calls"),
            }
        return Row(
            SCENARIO,
            case,
            value,
            "ns",
            baseline=label,
            ratio=value / base,
            samples=[ns(s) for s in timings.samples[name]],
            **extra,
        )

    own = "the agent's own tool"
    return [
        row(f"handle_call, {own}", "plain", "plain", own),
        row(
            "handle_call, RegistryToolset tool",
            "toolset",
            "plain",
            own,
            calls(registry, "add_async"),
        ),
        row("handle_call, own tool, a no-op capability", "nothing", "plain", own),
        row(
            "handle_call, own tool, Metered",
            "metered",
            "nothing",
            "a no-op capability",
            calls(metered, "add"),
        ),
    ]
