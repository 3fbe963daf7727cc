"""Scenario 9: what the LangChain adapter adds to one tool call, both ways.

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

SCENARIO = "9 langchain"
_CASES = (
    "LangChain tool.invoke(tool_call), its own StructuredTool",
    "LangChain tool.invoke, a dict JSON schema (LangChain validates nothing)",
    "structured_tools: the registry's tool (validated, counted), invoked alike",
    "LangChain tool.invoke + MeteredToolMiddleware around it",
    "LangChain tool.invoke + a callback handler that does nothing",
    "LangChain tool.invoke + MeteringCallbackHandler",
)


def run(sizes: Sizes, check: Check) -> list[Row]:
    try:
        from langchain.agents.middleware.types import ToolCallRequest
        from langchain_core.callbacks import BaseCallbackHandler
        from langchain_core.tools import StructuredTool

        from codex_tools.contrib.langchain import (
            MeteredToolMiddleware,
            MeteringCallbackHandler,
            structured_tools,
        )
    except ImportError:
        return [Row(SCENARIO, case, None, "ns", check="n/a") for case in _CASES]

    class Nothing(BaseCallbackHandler):
        run_inline = True

    registry = fresh_registry()  # ``add`` offered; LangChain's own tools metered into it too
    [offered] = [t for t in structured_tools(registry) if t.name == "add"]
    theirs = {
        name: StructuredTool.from_function(add.fn, name=name)
        for name in ("lc_add", "lc_metered", "lc_handled")
    }
    as_dict = StructuredTool(
        name="lc_dict", description=add.description, args_schema=add.parameters, func=add.fn
    )
    tool_call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1", "type": "tool_call"}
    middleware = MeteredToolMiddleware(registry)
    request = ToolCallRequest(tool_call, theirs["lc_metered"], state={}, runtime=None)  # type: ignore[arg-type]

    def execute(_: Any) -> Any:
        return theirs["lc_metered"].invoke(tool_call)

    namespace: dict[str, Any] = {
        "plain": theirs["lc_add"].invoke,
        "offered": offered.invoke,
        "as_dict": as_dict.invoke,
        "handled": theirs["lc_handled"].invoke,
        "call": tool_call,
        "wrap": middleware.wrap_tool_call,
        "request": request,
        "execute": execute,
        "nothing": {"callbacks": [Nothing()]},
        "metering": {"callbacks": [MeteringCallbackHandler(registry)]},
    }
    cases: dict[str, Run] = {
        "langchain": loop("plain(call)", namespace),
        "as_dict": loop("as_dict(call)", namespace),
        "offered": loop("offered(call)", namespace),
        "handler_alone": loop("execute(request)", namespace),
        "middleware": loop("wrap(request, execute)", namespace),
        "nothing": loop("handled(call, nothing)", namespace),
        "metering": loop("handled(call, metering)", namespace),
    }
    timings = interleave(cases, sizes.repeats, sizes.target_s)
    value: Callable[[str], float] = lambda name: ns(timings.median(name))  # noqa: E731
    ops = timings.operations
    counted = {
        "offered": calls(registry, "add"),
        "middleware": calls(registry, "lc_metered"),
        "metering": calls(registry, "lc_handled"),
    }

    def row(case: str, name: str, baseline: str, label: str, ours: bool = True) -> Row:
        added = value(name) - value(baseline)
        limit = max(0.05 * value(baseline), 2000.0)
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
        row(_CASES[3], "middleware", "handler_alone", "the same call, unwrapped"),
        row(_CASES[4], "nothing", "langchain", "no handler", ours=False),
        row(_CASES[5], "metering", "nothing", "a handler that does nothing"),
    ]


def _counted(check: Check, name: str, counted: Mapping[str, int], ops: Mapping[str, int]) -> str:
    return check(counted[name] == ops[name], f"{name}: {counted[name]} counted for {ops[name]}")
