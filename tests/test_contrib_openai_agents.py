"""The OpenAI Agents SDK adapter, against real ``Agent`` runs driven by a scripted loopback
Chat Completions server (tests/chat_server.py), with the real ``openai`` client."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, set_trace_processors
from openai import AsyncOpenAI

from chat_server import ChatServer, Reply, Servers, completion
from codex_tools import ToolRegistry, telemetry, tool
from codex_tools.contrib.openai_agents import function_tools


@pytest.fixture(autouse=True)
def _no_trace_export() -> None:
    """The SDK's default trace processor posts to OpenAI: nobody may export here."""
    set_trace_processors([])


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def model_on(server: ChatServer) -> OpenAIChatCompletionsModel:
    client = AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    return OpenAIChatCompletionsModel("test-model", client)


def tool_messages(request: dict[str, Any]) -> dict[str, str]:
    """What the model was told of each tool call, by call id."""
    return {m["tool_call_id"]: m["content"] for m in request["messages"] if m["role"] == "tool"}


async def run_agent(server: ChatServer, tools: list[Any], *, tracing: bool = True) -> str:
    agent = Agent(name="helper", tools=tools, model=model_on(server))
    result = await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=not tracing))
    return str(result.final_output)


def calls(*calls: tuple[str, str, str]) -> tuple[Reply, Reply]:
    """A turn asking for ``calls``, then a final answer."""
    return completion(1, *calls), completion(2, content="done")


@tool
def add(a: int, b: int = 2) -> int:
    """Add two integers."""
    return a + b


@tool
async def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"kaboom: {reason}")


@tool
def ping() -> str:
    """Answer pong."""
    return "pong"


@pytest.fixture
def ours() -> ToolRegistry:
    registry = ToolRegistry()
    for each in (add, explode, ping):
        registry.register(each)
    return registry


class TestFunctionTools:
    async def test_the_model_sees_our_output_and_our_error_text(
        self, serve: Servers, ours: ToolRegistry
    ) -> None:
        server = serve(
            *calls(("c-ok", "add", '{"a": 1, "b": 2}'), ("c-bad", "explode", '{"reason": "x"}'))
        )
        with telemetry.capture() as seen:
            assert await run_agent(server, function_tools(ours)) == "done"
        told = tool_messages(server.requests[1])
        assert told == {"c-ok": "3", "c-bad": "tool 'explode' failed: ValueError: kaboom: x"}
        snapshot = ours.metrics()
        assert snapshot["add"]["success"] == 1
        assert snapshot["add"]["failure"] == 0
        assert snapshot["explode"]["failure"] == 1
        assert snapshot["explode"]["last_error"] == {"type": "ValueError", "message": "kaboom: x"}
        assert snapshot["add"]["last_latency_ms"] > 0
        ends = {e.metadata["call_id"]: e for e in seen if e.event[-1] != "start"}
        assert ends["c-ok"].event == ("codex", "tool", "success")
        assert ends["c-bad"].event == ("codex", "tool", "failure")
        assert {e.metadata["originator"] for e in seen} == {"openai-agents"}

    async def test_arguments_the_schema_rejects_reach_the_model_as_text(
        self, serve: Servers, ours: ToolRegistry
    ) -> None:
        server = serve(
            *calls(("c1", "add", '{"a": "one"}'), ("c2", "add", "{not json"), ("c3", "ping", ""))
        )
        assert await run_agent(server, function_tools(ours)) == "done"
        told = tool_messages(server.requests[1])
        assert "invalid arguments for tool 'add'" in told["c1"]
        assert "a:" in told["c1"]
        assert "invalid arguments for tool 'add'" in told["c2"]
        assert told["c3"] == "pong"  # the SDK sends "" for a call without arguments
        snapshot = ours.metrics()
        assert snapshot["add"]["failure"] == 2
        assert snapshot["add"]["last_error"]["type"] == "ToolArgumentsError"
        assert snapshot["ping"]["success"] == 1

    async def test_hostile_text_goes_to_the_model_unchanged(self, serve: Servers) -> None:
        registry = ToolRegistry()

        @tool
        def echo(text: str) -> str:
            """Echo."""
            return text

        registry.register(echo)

        # Not a lone surrogate: the SDK itself cannot fingerprint such arguments.
        hostile = "[bold red]\x00\x1b[2J\u202e" + "x" * 100_000
        server = serve(*calls(("c1", "echo", json.dumps({"text": hostile}))))
        assert await run_agent(server, function_tools(registry)) == "done"
        assert tool_messages(server.requests[1]) == {"c1": hostile}
        assert registry.metrics()["echo"]["success"] == 1

    async def test_tools_keep_name_description_and_schema(
        self, serve: Servers, ours: ToolRegistry
    ) -> None:
        server = serve(completion(1, content="done"))
        await run_agent(server, function_tools(ours))
        offered = {t["function"]["name"]: t["function"] for t in server.requests[0]["tools"]}
        assert offered["add"]["description"] == "Add two integers."
        # An optional argument would become required in strict mode: sent as it is.
        assert offered["add"]["parameters"] == add.parameters
        assert offered["add"]["strict"] is False
        assert offered["explode"]["parameters"] == explode.parameters
        assert offered["explode"]["strict"] is True

    async def test_a_tool_switched_off_or_removed_later_is_no_longer_offered(
        self, serve: Servers, ours: ToolRegistry
    ) -> None:
        tools = function_tools(ours)
        ours.deregister("ping")
        ours.lookup("explode").enabled = False
        server = serve(completion(1, content="done"))
        await run_agent(server, tools)
        assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["add"]

    def test_open_objects_are_not_sent_strict(self) -> None:
        registry = ToolRegistry()

        @tool
        def store(record: dict[str, Any]) -> int:
            """Store a record."""
            return len(record)

        registry.register(store)

        [offered] = function_tools(registry)
        assert offered.strict_json_schema is False
        assert offered.params_json_schema == store.parameters


def test_importing_the_adapter_without_the_sdk_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['agents'] = None\n"
        "import codex_tools\n"
        "try:\n"
        "    import codex_tools.contrib.openai_agents\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'codex-tools[openai-agents]'" in out.stdout


def test_importing_codex_tools_does_not_import_the_sdk() -> None:
    code = "import sys, codex_tools; print('agents' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
