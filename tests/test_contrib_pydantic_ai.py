"""pydantic-ai agents, driven by a scripted FunctionModel, with our tools and our meter."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_ai import Agent
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

from codex_tools import Tool, ToolRegistry, telemetry
from codex_tools.contrib.pydantic_ai import RegistryToolset

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
    return agent.run_sync("go").output


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
        from pydantic_ai import ModelRetry

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


def test_missing_extra_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "codex_tools.contrib.pydantic_ai")
    for name in [n for n in sys.modules if n == "pydantic_ai" or n.startswith("pydantic_ai.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if never installed

    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[pydantic-ai\]'"):
        importlib.import_module("codex_tools.contrib.pydantic_ai")
