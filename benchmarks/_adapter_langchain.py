"""What the LangChain adapter adds to one tool call, both ways.

Every case calls the same two-int ``add`` the way LangChain's tool node does (a
``ToolCall`` in, a ``ToolMessage`` out), interleaved in one group, so each figure is a
difference against LangChain's own cost of the same call taken under the same load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from benchmarks._harness import Check, Row, Run, Sizes, interleave, loop, ns
from benchmarks._tools import add, calls, fresh_registry

__all__ = ["run"]

SCENARIO = "langchain"
_CASES = (
    "LangChain tool.invoke(tool_call), its own StructuredTool",
    "LangChain tool.invoke, a dict JSON schema (LangChain validates nothing)",
    "structured_tools: the registry's tool (validated, counted), invoked alike",
    "MeteredToolMiddleware.wrap_tool_call, its own work per call",
    "MeteringCallbackHandler on_tool_start + on_tool_end, its own work per call",
)


def run(sizes: Sizes, check: Check) -> list[Row]:
    try:
        from langchain.agents.middleware.types import ToolCallRequest
        from langchain_core.callbacks import BaseCallbackHandler
        from langchain_core.messages import ToolMessage
        from langchain_core.tools import StructuredTool
        from langchain_core.utils.uuid import uuid7

        from codex_tools.contrib.langchain import (
            MeteredToolMiddleware,
            MeteringCallbackHandler,
            structured_tools,
        )
    except ImportError:
        return [Row(SCENARIO, case, None, "ns", check="n/a") for case in _CASES]

    registry = fresh_registry()  # ``add`` offered; LangChain's own tools metered into it too
    [offered] = [t for t in structured_tools(registry) if t.name == "add"]
    theirs = StructuredTool.from_function(add.fn)
    as_dict = StructuredTool(
        name="lc_dict", description=add.description, args_schema=add.parameters, func=add.fn
    )
    tool_call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1", "type": "tool_call"}
    # What the tool node hands the middleware and what it gets back, minus the tool itself:
    # the figure is the middleware's own work, which the tool's cost does not change.
    metered = StructuredTool.from_function(add.fn, name="lc_metered")
    request = ToolCallRequest(tool_call, metered, state={}, runtime=None)  # type: ignore[arg-type]
    answer = ToolMessage("3", name="lc_metered", tool_call_id="call-1")
    namespace: dict[str, Any] = {
        "plain": theirs.invoke,
        "as_dict": as_dict.invoke,
        "offered": offered.invoke,
        "call": tool_call,
        "wrap": MeteredToolMiddleware(registry).wrap_tool_call,
        "request": request,
        "execute": lambda _: answer,
        "ours": MeteringCallbackHandler(registry),
        "nothing": BaseCallbackHandler(),
        "new_id": uuid7,  # LangChain makes one per run either way
        "serialized": {"name": "lc_handled", "description": ""},
        "inputs": {"a": 1, "b": 2},
        "answer": answer,
    }
    callbacks = (
        "i = new_id(); "
        "h.on_tool_start(serialized, '', run_id=i, inputs=inputs, tool_call_id='call-1'); "
        "h.on_tool_end(answer, run_id=i)"
    )
    cases: dict[str, Run] = {
        "langchain": loop("plain(call)", namespace),
        "as_dict": loop("as_dict(call)", namespace),
        "offered": loop("offered(call)", namespace),
        "unwrapped": loop("execute(request)", namespace),
        "middleware": loop("wrap(request, execute)", namespace),
        "nothing": loop(callbacks, namespace, setup="h = nothing"),
        "metering": loop(callbacks, namespace, setup="h = ours"),
    }
    timings = interleave(cases, sizes.repeats, sizes.target_s)
    value: Callable[[str], float] = lambda name: ns(timings.median(name))  # noqa: E731
    ops = timings.operations
    counted = {
        "offered": calls(registry, "add"),
        "middleware": calls(registry, "lc_metered"),
        "metering": calls(registry, "lc_handled"),
    }
    # The target: what we add is at most 5% of LangChain's own cost of the call, or 2 µs.
    limit = max(0.05 * value("langchain"), 2000.0)

    def row(case: str, name: str, baseline: str, label: str, ours: bool = True) -> Row:
        added = value(name) - value(baseline)
        return Row(
            SCENARIO,
            case,
            value(name),
            "ns",
            baseline=label,
            ratio=value(name) / value(baseline),
            target=f"adds ≤ {limit / 1e3:.1f} µs; adds {added / 1e3:+.1f} µs" if ours else "",
            met=added <= limit if ours else None,
            check=_counted(check, name, counted, ops) if name in counted else "ok",
            samples=[ns(s) for s in timings.samples[name]],
        )

    return [
        Row(
            SCENARIO,
            _CASES[0],
            value("langchain"),
            "ns",
            samples=[ns(s) for s in timings.samples["langchain"]],
        ),
        row(_CASES[1], "as_dict", "langchain", "LangChain's own tool", ours=False),
        row(_CASES[2], "offered", "as_dict", "the dict-schema tool"),
        row(_CASES[3], "middleware", "unwrapped", "the handler it wraps, alone"),
        row(_CASES[4], "metering", "nothing", "a handler that does nothing"),
    ]


def _counted(check: Check, name: str, counted: Mapping[str, int], ops: Mapping[str, int]) -> str:
    return check(counted[name] == ops[name], f"{name}: {counted[name]} counted for {ops[name]}")
