"""pydantic-ai agents, driven by a scripted FunctionModel, with our tools and our meter."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_ai import Agent, ModelRetry, RunContext, ToolFailed
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import ToolDefinition

import codex_tools
from codex_tools import Tool, ToolRegistry, telemetry, tool
from codex_tools.contrib.pydantic_ai import Metered, RegistryToolset

TOOLS_MODULE = Path(__file__).parent / "mcp_server" / "tools_module.py"

Call = tuple[str, Any, str]  # tool name, arguments (dict or JSON text), tool-call id


class Script:
    """A model that asks for the given tool calls, one turn each, then answers "done".

    It keeps every request it was sent (what the model saw) and the tool definitions.
    """

    def __init__(self, *turns: Sequence[Call]) -> None:
        self.turns = list(turns)
        self.requests: list[ModelRequest] = []
        self.tools: list[ToolDefinition] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1]
        assert isinstance(last, ModelRequest)
        self.requests.append(last)
        self.tools = list(info.function_tools)
        if len(self.requests) <= len(self.turns):
            calls = self.turns[len(self.requests) - 1]
            return ModelResponse(
                parts=[ToolCallPart(name, args, tool_call_id=id_) for name, args, id_ in calls]
            )
        return ModelResponse(parts=[TextPart("done")])

    def returns(self) -> dict[str, ToolReturnPart]:
        """Every tool result the model was sent, by tool-call id."""
        return {
            part.tool_call_id: part
            for request in self.requests
            for part in request.parts
            if isinstance(part, ToolReturnPart)
        }


def run(script: Script, **agent_options: Any) -> str:
    agent = Agent(FunctionModel(script), **agent_options)
    return asyncio.run(agent.run("go")).output  # run_sync would leave its event loop open


def by_call_id(events: list[telemetry.CapturedEvent]) -> dict[str, list[str]]:
    ends: dict[str, list[str]] = {}
    for event in events:
        ends.setdefault(event.metadata["call_id"], []).append(event.event[-1])
    return ends


@pytest.fixture
def tools(registry: ToolRegistry) -> ToolRegistry:
    @registry.register
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @registry.register
    async def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(f"exploded: {reason}")

    return registry


class TestRegistryToolset:
    def test_the_model_sees_our_outputs_and_errors_and_each_call_is_counted(
        self, tools: ToolRegistry
    ) -> None:
        script = Script([("add", {"a": 2, "b": 3}, "c-add"), ("explode", {"reason": "x"}, "c-x")])
        with telemetry.capture() as events:
            assert run(script, toolsets=[RegistryToolset(tools)]) == "done"

        seen = script.returns()
        assert seen["c-add"].content == 5
        assert seen["c-add"].outcome == "success"
        assert seen["c-x"].outcome == "failed"  # ToolFailed: shown, no retry budget used
        assert "ValueError: exploded: x" in seen["c-x"].model_response_str()

        metrics = tools.metrics()
        assert (metrics["add"]["success"], metrics["add"]["failure"]) == (1, 0)
        assert (metrics["explode"]["success"], metrics["explode"]["failure"]) == (0, 1)
        assert metrics["explode"]["last_error"]["type"] == "ValueError"
        assert metrics["add"]["total_latency_ms"] > 0
        assert by_call_id(events) == {"c-add": ["start", "success"], "c-x": ["start", "failure"]}
        assert {event.metadata["originator"] for event in events} == {"pydantic-ai"}
        run_ids = {(event.metadata["thread_id"], event.metadata["turn_id"]) for event in events}
        assert len(run_ids) == 1
        assert None not in next(iter(run_ids))

    def test_the_schema_and_description_are_offered_as_they_are(self, tools: ToolRegistry) -> None:
        script = Script()
        run(script, toolsets=[RegistryToolset(tools)])
        offered = {definition.name: definition for definition in script.tools}
        assert offered["add"].parameters_json_schema == tools.lookup("add").parameters
        assert offered["add"].description == "Add two integers."
        assert offered["add"].metadata is not None
        assert offered["add"].metadata["annotations"] is None

    def test_mcp_annotations_travel_in_the_tool_definitions_metadata(
        self, registry: ToolRegistry
    ) -> None:
        try:
            lookup = tool(name="lookup", read_only=True, destructive=False)(lambda key: key)
        except TypeError:  # pragma: no cover
            pytest.skip("this core has no tool annotations yet")
        registry.register(lookup)
        script = Script()
        run(script, toolsets=[RegistryToolset(registry)])
        (offered,) = script.tools
        assert offered.metadata is not None
        assert offered.metadata["annotations"] == {"readOnlyHint": True, "destructiveHint": False}

    @pytest.mark.parametrize(
        "arguments",
        [
            {"a": "two", "b": 3},
            {"a": 1},
            "{not json",
            "[1, 2]",
            '"a string"',
            {"a": 1, "b": 2, "c": 3},
        ],
    )
    def test_bad_arguments_ask_the_model_to_retry_and_are_counted(
        self, tools: ToolRegistry, arguments: Any
    ) -> None:
        script = Script([("add", arguments, "c1")], [("add", {"a": 1, "b": 1}, "c2")])
        with telemetry.capture() as events:
            assert run(script, toolsets=[RegistryToolset(tools)]) == "done"

        retried = script.returns()["c1"]
        assert retried.outcome == "retried"
        assert "invalid arguments for tool 'add'" in retried.model_response_str()
        assert script.returns()["c2"].content == 2
        metrics = tools.metrics()["add"]
        assert (metrics["success"], metrics["failure"], metrics["retries"]) == (1, 1, 1)
        assert metrics["last_error"]["type"] == "ToolArgumentsError"
        tags = {e.metadata["call_id"]: (e.metadata["attempt"], e.metadata["retry"]) for e in events}
        assert tags == {"c1": (1, False), "c2": (2, True)}

    def test_a_model_that_never_gets_the_arguments_right_ends_the_run_as_pydantic_ai_does(
        self, tools: ToolRegistry
    ) -> None:
        from pydantic_ai.exceptions import UnexpectedModelBehavior

        script = Script(*([("add", {"a": "x"}, f"c{i}")] for i in range(5)))
        with pytest.raises(UnexpectedModelBehavior, match="exceeded max retries count of 2"):
            run(script, toolsets=[RegistryToolset(tools, max_retries=2)])
        assert tools.metrics()["add"]["failure"] == 3  # each try counted, the last one too

    def test_a_tool_switched_off_is_not_offered_and_one_switched_off_per_call_fails_softly(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(Tool(name="off", fn=lambda: 1, enabled=False))
        registry.register(Tool(name="gated", fn=lambda: 1, enabled=lambda ctx: False))
        script = Script([("gated", {}, "c1")])
        run(script, toolsets=[RegistryToolset(registry)])

        assert [definition.name for definition in script.tools] == ["gated"]
        assert script.returns()["c1"].outcome == "failed"
        assert "disabled" in script.returns()["c1"].model_response_str()
        assert registry.metrics() == {}  # not run: no entry, as for any caller

    def test_tools_registered_or_removed_during_a_run_are_seen_at_the_next_step(
        self, registry: ToolRegistry
    ) -> None:
        def first() -> str:
            registry.deregister("first")
            registry.register(Tool(name="second", fn=lambda: "two"))
            return "one"

        registry.register(first)
        script = Script([("first", {}, "c1")], [("second", {}, "c2"), ("first", {}, "c3")])
        run(script, toolsets=[RegistryToolset(registry)])

        seen = script.returns()
        assert (seen["c1"].content, seen["c2"].content) == ("one", "two")
        assert seen["c3"].outcome == "retried"  # pydantic-ai's own "unknown tool" prompt
        assert [definition.name for definition in script.tools] == ["second"]

    def test_a_registry_tool_written_for_pydantic_ai_may_ask_for_a_retry(
        self, registry: ToolRegistry
    ) -> None:
        @registry.register
        def picky(word: str) -> str:
            if word != "please":
                raise ModelRetry("say please")
            return "thanks"

        script = Script([("picky", {"word": "now"}, "c1")], [("picky", {"word": "please"}, "c2")])
        run(script, toolsets=[RegistryToolset(registry)])

        assert script.returns()["c1"].outcome == "retried"
        assert "say please" in script.returns()["c1"].model_response_str()
        assert script.returns()["c2"].content == "thanks"
        metrics = registry.metrics()["picky"]
        assert (metrics["success"], metrics["failure"]) == (1, 1)
        assert metrics["last_error"]["type"] == "ModelRetry"

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(message=st.text(max_size=3000))
    def test_any_error_text_reaches_the_model_and_the_run_goes_on(self, message: str) -> None:
        registry = ToolRegistry()

        def hostile() -> None:
            raise RuntimeError(message)

        registry.register(hostile)
        script = Script([("hostile", {}, "c1")])
        assert run(script, toolsets=[RegistryToolset(registry)]) == "done"
        assert script.returns()["c1"].outcome == "failed"
        assert registry.metrics()["hostile"]["failure"] == 1


def own_tools(registry: ToolRegistry) -> Agent[None, str]:
    """An agent with tools of its own (one fine, one picky, one broken), metered."""
    script = Script()
    agent = Agent(FunctionModel(script), capabilities=[Metered(registry)])

    @agent.tool_plain
    def square(x: int) -> int:
        """Square a number."""
        return x * x

    @agent.tool_plain(retries=3)
    def picky(word: str) -> str:
        """Only polite words."""
        if word != "please":
            raise ModelRetry(f"{word!r} is not polite")
        return "thanks"

    @agent.tool_plain
    def gone(path: str) -> str:
        """Report a missing file."""
        raise ToolFailed(f"{path} is gone")

    @agent.tool_plain
    def broken() -> str:
        """Crash."""
        raise ZeroDivisionError("no")

    return agent


def drive(agent: Agent[None, str], script: Script) -> str:
    """Run ``agent`` with ``script`` as its model."""
    return asyncio.run(agent.run("go", model=FunctionModel(script))).output


class TestMetered:
    def test_the_agents_own_tools_are_counted_with_what_the_model_was_shown(
        self, registry: ToolRegistry
    ) -> None:
        script = Script(
            [("square", {"x": 4}, "c-ok"), ("picky", {"word": "now"}, "c-retry")],
            [("picky", {"word": "please"}, "c-retry-2"), ("square", {"x": "four"}, "c-bad")],
            [("gone", {"path": "/x"}, "c-gone")],
        )
        with telemetry.capture() as events:
            assert drive(own_tools(registry), script) == "done"

        seen = script.returns()
        assert seen["c-ok"].content == 16
        assert "'now' is not polite" in seen["c-retry"].model_response_str()
        assert seen["c-retry"].outcome == "retried"
        assert seen["c-retry-2"].content == "thanks"
        assert seen["c-bad"].outcome == "retried"  # pydantic-ai's own validation message
        assert seen["c-gone"].outcome == "failed"

        metrics = registry.metrics()
        assert (metrics["square"]["success"], metrics["square"]["failure"]) == (1, 1)
        assert metrics["square"]["last_error"]["type"] == "ValidationError"
        assert (metrics["picky"]["success"], metrics["picky"]["failure"]) == (1, 1)
        assert metrics["picky"]["last_error"] == {
            "type": "ModelRetry",
            "message": "'now' is not polite",
        }
        assert metrics["picky"]["retries"] == 1
        assert metrics["gone"]["last_error"] == {"type": "ToolFailed", "message": "/x is gone"}
        assert all(entry["total_latency_ms"] > 0 for entry in metrics.values())
        assert all(entry["in_flight"] == 0 for entry in metrics.values())

        assert by_call_id(events) == {
            "c-ok": ["start", "success"],
            "c-retry": ["start", "failure"],
            "c-retry-2": ["start", "success"],
            "c-bad": ["start", "failure"],
            "c-gone": ["start", "failure"],
        }
        assert {event.metadata["originator"] for event in events} == {"pydantic-ai"}
        tags = {e.metadata["call_id"]: (e.metadata["attempt"], e.metadata["retry"]) for e in events}
        assert tags["c-retry"] == (1, False)
        assert tags["c-retry-2"] == (2, True)

    def test_a_tool_that_raises_anything_else_ends_the_run_and_is_counted(
        self, registry: ToolRegistry
    ) -> None:
        with pytest.raises(ZeroDivisionError):
            drive(own_tools(registry), Script([("broken", {}, "c1")]))
        assert registry.metrics()["broken"]["failure"] == 1
        assert registry.metrics()["broken"]["in_flight"] == 0
        assert registry.metrics()["broken"]["last_error"]["type"] == "ZeroDivisionError"

    def test_the_retry_that_exhausts_the_budget_counts_as_what_the_tool_raised(
        self, registry: ToolRegistry
    ) -> None:
        from pydantic_ai.exceptions import UnexpectedModelBehavior

        script = Script(*([("picky", {"word": "now"}, f"c{i}")] for i in range(6)))
        with pytest.raises(UnexpectedModelBehavior):
            drive(own_tools(registry), script)
        picky = registry.metrics()["picky"]
        assert (picky["failure"], picky["in_flight"]) == (4, 0)  # 3 retries allowed, then the end
        assert picky["last_error"]["type"] == "ModelRetry"

    @pytest.mark.parametrize("same", [True, False], ids=["same registry", "another registry"])
    def test_a_registry_tool_is_counted_once_in_each_registry_that_meters_it(
        self, tools: ToolRegistry, same: bool
    ) -> None:
        meter = tools if same else ToolRegistry()
        script = Script([("add", {"a": 1, "b": 1}, "c1"), ("explode", {"reason": "r"}, "c2")])
        with telemetry.capture() as events:
            run(script, toolsets=[RegistryToolset(tools)], capabilities=[Metered(meter)])

        for registry in {id(tools): tools, id(meter): meter}.values():
            metrics = registry.metrics()
            assert (metrics["add"]["success"], metrics["add"]["failure"]) == (1, 0)
            assert (metrics["explode"]["success"], metrics["explode"]["failure"]) == (0, 1)
        assert meter.metrics()["explode"]["last_error"]["type"] == (
            "ValueError" if same else "ToolFailed"  # what the registry saw, what pydantic-ai saw
        )
        starts = [event.metadata["call_id"] for event in events if event.event[-1] == "start"]
        assert sorted(starts) == (["c1", "c2"] if same else ["c1", "c1", "c2", "c2"])

    def test_a_registry_tool_renamed_by_a_wrapper_toolset_is_still_counted_once(
        self, tools: ToolRegistry
    ) -> None:
        script = Script([("calc_add", {"a": 2, "b": 2}, "c1")])
        toolset = RegistryToolset(tools).prefixed("calc")
        run(script, toolsets=[toolset], capabilities=[Metered(tools)])

        assert script.returns()["c1"].content == 4
        assert tools.metrics()["add"]["success"] == 1
        assert "calc_add" not in tools.metrics()

    def test_a_deferred_call_or_one_answered_in_the_tools_place_is_no_failure(
        self, registry: ToolRegistry
    ) -> None:
        from pydantic_ai import CallDeferred, DeferredToolRequests
        from pydantic_ai.capabilities import AbstractCapability
        from pydantic_ai.exceptions import SkipToolExecution

        class Cache(AbstractCapability[Any]):
            async def before_tool_execute(
                self,
                ctx: RunContext[Any],
                *,
                call: ToolCallPart,
                tool_def: ToolDefinition,
                args: dict[str, Any],
            ) -> dict[str, Any]:
                if call.tool_name == "cached":
                    raise SkipToolExecution("from the cache")
                return args

        script = Script([("cached", {}, "c1"), ("later", {}, "c2")])
        agent = Agent(
            FunctionModel(script),
            output_type=[str, DeferredToolRequests],
            capabilities=[Cache(), Metered(registry)],
        )

        @agent.tool_plain
        def cached() -> str:
            raise AssertionError("not run")

        @agent.tool_plain
        def later() -> str:
            raise CallDeferred

        output = asyncio.run(agent.run("go")).output
        assert isinstance(output, DeferredToolRequests)
        assert [call.tool_call_id for call in output.calls] == ["c2"]
        metrics = registry.metrics()
        assert (metrics["cached"]["success"], metrics["later"]["success"]) == (1, 1)
        assert metrics["cached"]["failure"] + metrics["later"]["failure"] == 0

    @pytest.mark.slow
    async def test_mcp_tools_are_metered_and_an_error_result_counts_with_its_text(
        self, registry: ToolRegistry
    ) -> None:
        from fastmcp.client import Client
        from fastmcp.client.transports import StdioTransport
        from pydantic_ai.mcp import MCPToolset

        server = StdioTransport(sys.executable, ["-m", "codex_tools", "mcp", str(TOOLS_MODULE)])
        script = Script([("add", {"a": 1, "b": 2}, "m1"), ("divide", {"a": 1, "b": 0}, "m2")])
        agent = Agent(
            FunctionModel(script),
            toolsets=[MCPToolset(Client(server))],
            capabilities=[Metered(registry)],
        )
        with telemetry.capture() as events:
            async with agent:
                assert (await agent.run("go")).output == "done"

        seen = script.returns()
        assert seen["m1"].content == "3"
        error_text = "tool 'divide' failed: ZeroDivisionError: float division by zero"
        assert error_text in seen["m2"].model_response_str()
        metrics = registry.metrics()
        assert (metrics["add"]["success"], metrics["divide"]["failure"]) == (1, 1)
        assert metrics["divide"]["last_error"] == {"type": "ModelRetry", "message": error_text}
        assert by_call_id(events) == {"m1": ["start", "success"], "m2": ["start", "failure"]}
        assert {event.metadata["originator"] for event in events} == {"pydantic-ai"}


def test_without_a_registry_both_use_the_default_one() -> None:
    default = codex_tools.default_registry()
    handle = codex_tools.register(lambda text: text[::-1], name="pydantic_ai_reverse")
    try:
        script = Script([("pydantic_ai_reverse", {"text": "abc"}, "c1")])
        run(script, toolsets=[RegistryToolset()], capabilities=[Metered()])
        assert script.returns()["c1"].content == "cba"
        assert default.metrics()["pydantic_ai_reverse"]["success"] == 1  # and only once
    finally:
        codex_tools.deregister(handle)
        codex_tools.reset_metrics()


def test_missing_extra_names_the_pip_install(uninstalled: Callable[[str, str], None]) -> None:
    uninstalled("pydantic_ai", "codex_tools.contrib.pydantic_ai")
    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[pydantic-ai\]'"):
        importlib.import_module("codex_tools.contrib.pydantic_ai")


def test_importing_codex_tools_does_not_import_pydantic_ai() -> None:
    code = "import sys, codex_tools; sys.exit('pydantic_ai' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0
