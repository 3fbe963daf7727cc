"""The OpenAI Agents SDK adapter: what each direction adds to one tool call, against the
SDK calling the same trivial async tool without us, in the same run and event loop.

Three baselines of the SDK's own per-call cost: ``on_invoke_tool`` alone, in a function
span, and a whole tool call inside ``Runner.run`` (an in-process scripted model asks for
``BATCH`` calls in one turn; a run that asks for none is subtracted).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    Model,
    ModelResponse,
    Runner,
    Usage,
    function_tool,
    set_trace_processors,
    trace,
)
from agents.tracing import function_span
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from benchmarks._async import _in_loop
from benchmarks._harness import Check, Row, Run, Sizes, interleave, ns
from benchmarks._tools import add_async, calls, fresh_registry

__all__ = ["run"]

SCENARIO = "openai-agents"
ARGUMENTS = '{"a": 1, "b": 2}'
BATCH = 16  # tool calls per model turn in the whole-run cases


class _ScriptedModel(Model):
    """Asks for ``calls`` calls of ``add`` in its first turn, then answers."""

    def __init__(self, calls: int) -> None:
        self.calls = calls

    async def get_response(self, system_instructions: Any, input: Any, *_: Any, **__: Any) -> Any:
        answered = isinstance(input, list) and any(
            isinstance(item, dict) and item.get("type") == "function_call_output" for item in input
        )
        output: list[Any]
        if answered or not self.calls:
            text = ResponseOutputText(type="output_text", text="done", annotations=[])
            output = [
                ResponseOutputMessage(
                    id="m", type="message", role="assistant", status="completed", content=[text]
                )
            ]
        else:
            output = [
                ResponseFunctionToolCall(
                    type="function_call",
                    id=f"f{i}",
                    call_id=f"c{i}",
                    name="add",
                    arguments=ARGUMENTS,
                )
                for i in range(self.calls)
            ]
        return ModelResponse(output=output, usage=Usage(), response_id=None)

    def stream_response(self, *_: Any, **__: Any) -> Any:
        raise NotImplementedError


def run(sizes: Sizes, check: Check) -> list[Row]:
    import agents.run_internal.tool_execution as run_tools
    from agents.tool_context import ToolContext

    from codex_tools.contrib.openai_agents import function_tools, instrument

    set_trace_processors([])  # spans are made, and nobody exports them
    registry = fresh_registry()
    [ours] = (each for each in function_tools(registry) if each.name == "add_async")
    sdk_tool = function_tool(add_async.fn, name_override="add")
    context = ToolContext(
        context=None, tool_name="add", tool_call_id="call-1", tool_arguments=ARGUMENTS
    )
    metered = fresh_registry()
    loop = asyncio.new_event_loop()

    def instrumented(run: Run) -> Run:
        def run_instrumented(n: int) -> float:
            with instrument(metered):
                return run(n)

        return run_instrumented

    def timed(step: Callable[[], Awaitable[Any]]) -> Run:
        return _in_loop(loop, step, time.thread_time)

    def in_span(step: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        async def step_in_span() -> Any:
            with function_span("add"):
                return await step()

        return step_in_span

    def on_invoke(tool: FunctionTool) -> Callable[[], Awaitable[Any]]:
        return lambda: tool.on_invoke_tool(context, ARGUMENTS)

    def wrapped_call() -> Awaitable[Any]:  # looked up per call: instrument() replaces it
        invoke = run_tools._invoke_function_tool_with_metadata
        return invoke(function_tool=sdk_tool, context=context, arguments=ARGUMENTS)

    def agent_run(calls: int) -> Callable[[], Awaitable[Any]]:
        agent = Agent(name="bench", tools=[sdk_tool], model=_ScriptedModel(calls))
        return lambda: Runner.run(agent, "go")

    cases: dict[str, Run] = {
        "sdk_on_invoke": timed(on_invoke(sdk_tool)),
        "sdk_on_invoke_span": timed(in_span(on_invoke(sdk_tool))),
        "ours_on_invoke": timed(on_invoke(ours)),
        "ours_on_invoke_span": timed(in_span(on_invoke(ours))),
        "sdk_invoke": timed(wrapped_call),
        "sdk_invoke_metered": instrumented(timed(wrapped_call)),
        "sdk_invoke_span": timed(in_span(wrapped_call)),
        "sdk_invoke_metered_span": instrumented(timed(in_span(wrapped_call))),
        "run_none": timed(agent_run(0)),
        "run_batch": timed(agent_run(BATCH)),
        "run_batch_metered": instrumented(timed(agent_run(BATCH))),
    }
    try:
        with trace("benchmark"):
            timings = interleave(cases, sizes.repeats, sizes.target_s)
    finally:
        loop.close()
    ops = timings.operations

    def row(
        case: str,
        name: str,
        baseline: str,
        counted: tuple[str, int, int] | None = None,
        base: str | None = None,
    ) -> Row:
        """A timed case. ``counted`` = (what, calls counted, calls made) is checked; with
        ``base`` (a case of the SDK alone) the target is met if the case adds at most
        5% of that case's cost, or 2 µs."""
        result = Row(
            SCENARIO,
            case,
            cost[name],
            "ns",
            baseline=baseline,
            ratio=cost[name] / cost[base or name],
        )
        if not name.startswith("run_"):  # a run's samples are of whole runs
            result.samples = [ns(s) for s in timings.samples[name]]
        if counted is not None:
            what, got, made = counted
            result.check = check(got == made, f"{what}: {got} counted for {made} calls")
        if base is not None:
            extra, allowed = cost[name] - cost[base], max(0.05 * cost[base], 2000.0)
            result.target = f"adds ≤ {allowed / 1e3:.2f} µs: {extra / 1e3:+.2f} µs"
            result.met = extra <= allowed
        return result

    cost = {name: ns(timings.median(name)) for name in cases}
    for name in ("run_batch", "run_batch_metered"):  # one call's share of a run
        cost[name] = (cost[name] - cost["run_none"]) / BATCH
    ours_made = ops["ours_on_invoke"] + ops["ours_on_invoke_span"]
    metered_made = (
        ops["sdk_invoke_metered"]
        + ops["sdk_invoke_metered_span"]
        + BATCH * ops["run_batch_metered"]
    )
    ours_counted = ("function_tools", calls(registry, "add_async"), ours_made)
    metered_counted = ("instrument", calls(metered, "add"), metered_made)
    return [
        row("SDK tool: on_invoke_tool", "sdk_on_invoke", "SDK tool"),
        row(
            "SDK tool: on_invoke_tool in a function span",
            "sdk_on_invoke_span",
            "SDK tool in a span",
        ),
        row(
            "function_tools tool: on_invoke_tool (ainvoke)",
            "ours_on_invoke",
            "SDK tool",
            ours_counted,
            base="sdk_on_invoke",
        ),
        row(
            "function_tools tool: the same in a span",
            "ours_on_invoke_span",
            "SDK tool in a span",
            base="sdk_on_invoke_span",
        ),
        row("SDK tool: the call instrument wraps", "sdk_invoke", "SDK call"),
        row(
            "SDK tool: the same, instrumented",
            "sdk_invoke_metered",
            "SDK call",
            metered_counted,
            base="sdk_invoke",
        ),
        row(
            "SDK tool: the call instrument wraps, in a span",
            "sdk_invoke_span",
            "SDK call in a span",
        ),
        row(
            "SDK tool: the same, instrumented",
            "sdk_invoke_metered_span",
            "SDK call in a span",
            base="sdk_invoke_span",
        ),
        row(f"SDK tool: one call of {BATCH} in a Runner.run turn", "run_batch", "SDK run"),
        row(
            "SDK tool: the same, instrumented",
            "run_batch_metered",
            "SDK run",
            base="run_batch",
        ),
    ]
