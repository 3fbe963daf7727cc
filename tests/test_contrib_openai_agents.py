"""The OpenAI Agents SDK adapter, against real ``Agent`` runs driven by a scripted loopback
Chat Completions server (tests/chat_server.py), with the real ``openai`` client."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import agents.run_internal.tool_execution
import agents.tool
import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    UserError,
    function_tool,
    set_trace_processors,
)
from agents.mcp import MCPServerStdio
from agents.mcp.util import MCPUtil
from agents.tool_context import ToolContext
from openai import AsyncOpenAI

from chat_server import ChatServer, Reply, Servers, completion
from codex_tools import Tool, ToolDefinitionError, ToolRegistry, telemetry, tool
from codex_tools.contrib.openai_agents import function_tools, instrument


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


def outcomes(registry: ToolRegistry) -> dict[str, tuple[int, int]]:
    """``(successes, failures)`` of each tool, none of them still running."""
    snapshot = registry.metrics()
    assert not any(entry["in_flight"] for entry in snapshot.values())
    return {name: (entry["success"], entry["failure"]) for name, entry in snapshot.items()}


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
        assert outcomes(ours) == {"add": (1, 0), "explode": (0, 1)}
        snapshot = ours.metrics()
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
        switch = Tool(name="switch", fn=lambda: "on", enabled=True)
        ours.register(switch)
        tools = function_tools(ours)
        ours.deregister("ping")
        switch.enabled = False
        server = serve(completion(1, content="done"))
        await run_agent(server, tools)
        assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["add", "explode"]

    @pytest.mark.parametrize("name", ["web search", "fetch[/api]", "x" * 65, "caf\u00e9"])
    def test_a_name_openai_refuses_is_a_definition_error(self, name: str) -> None:
        registry = ToolRegistry()
        registry.register(Tool(name=name, fn=lambda: 1))
        with pytest.raises(ValueError, match="cannot be offered to an OpenAI model") as caught:
            function_tools(registry)
        assert isinstance(caught.value, ToolDefinitionError)
        assert caught.value.tool == name

    def test_mcp_annotations_are_where_the_sdk_keeps_an_mcp_tools(self, ours: ToolRegistry) -> None:
        ours.register(tool(name="lookup", read_only=True, destructive=False)(lambda key: key))
        offered = {each.name: each for each in function_tools(ours)}
        annotations = offered["lookup"].mcp_annotations
        assert annotations is not None
        assert annotations.model_dump(by_alias=True, exclude_none=True) == {
            "readOnlyHint": True,
            "destructiveHint": False,
        }
        assert offered["add"].mcp_annotations is None

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


@function_tool
def double(x: int) -> int:
    """Double x."""
    return 2 * x


@function_tool
def crash(x: int) -> int:
    """Always fails."""
    raise RuntimeError(f"crashed on {x}")


@function_tool(failure_error_function=None)
def crash_loudly(x: int) -> int:
    """Fails, and asks the SDK to fail the run."""
    raise RuntimeError("loud")


@function_tool(timeout=0.05)
async def sleepy(x: int) -> int:
    """Outlives its timeout."""
    await asyncio.sleep(5)
    return x


def realtime_context() -> ToolContext[Any]:
    """A ToolContext as the SDK's realtime sessions make one, outside any run."""
    return ToolContext(context=None, tool_name="crash", tool_call_id="rt-1", tool_arguments="")


def exceptions_on(context: ToolContext[Any]) -> list[BaseException]:
    """What of a failure an SDK context keeps (a traceback's frames stay alive with it)."""
    return [each for each in vars(context).values() if isinstance(each, BaseException)]


#: Every attribute instrument() replaces, as the SDK defines it.
WRAPPED = [
    (agents.run_internal.tool_execution, "_invoke_function_tool_with_metadata"),
    (agents.tool, "_invoke_function_tool_with_metadata"),
    (agents.tool, "maybe_invoke_function_tool_failure_error_function"),
    (MCPUtil, "_extract_custom_data"),
]


def sdk_as_is() -> list[Any]:
    return [vars(owner)[name] for owner, name in WRAPPED]


class TestInstrument:
    @pytest.mark.parametrize("tracing", [True, False], ids=["tracing-on", "tracing-off"])
    async def test_the_agents_own_tools_are_metered(
        self, serve: Servers, registry: ToolRegistry, tracing: bool
    ) -> None:
        server = serve(*calls(("c-ok", "double", '{"x": 21}'), ("c-bad", "crash", '{"x": 1}')))
        with instrument(registry), telemetry.capture() as seen:
            assert await run_agent(server, [double, crash], tracing=tracing) == "done"
        # The model saw what the SDK shows it; the error is in our metrics.
        told = tool_messages(server.requests[1])
        assert told["c-ok"] == "42"
        assert told["c-bad"] == "An error occurred while running the tool. Please try again."
        assert outcomes(registry) == {"double": (1, 0), "crash": (0, 1)}
        snapshot = registry.metrics()
        assert snapshot["crash"]["last_error"] == {
            "type": "RuntimeError",
            "message": "crashed on 1",
        }
        assert snapshot["double"]["last_latency_ms"] > 0
        ends = {e.metadata["call_id"]: e for e in seen if e.event[-1] != "start"}
        assert ends["c-ok"].event == ("codex", "tool", "success")
        assert ends["c-ok"].metadata["output"] == 42
        assert ends["c-bad"].event == ("codex", "tool", "failure")
        assert {e.metadata["originator"] for e in seen} == {"openai-agents"}

    async def test_concurrent_calls_of_one_turn_each_end_as_they_did(
        self, serve: Servers, registry: ToolRegistry
    ) -> None:
        turn = [(f"c{i}", "crash" if i % 2 else "double", json.dumps({"x": i})) for i in range(40)]
        server = serve(*calls(*turn))
        with instrument(registry), telemetry.capture() as seen:
            await run_agent(server, [double, crash])
        assert outcomes(registry) == {"double": (20, 0), "crash": (0, 20)}
        ends = {e.metadata["call_id"]: e for e in seen if e.event[-1] != "start"}
        assert len(ends) == 40
        for call_id, name, _ in turn:
            end = ends[call_id]
            assert end.metadata["tool"] == name
            assert end.event[-1] == ("failure" if name == "crash" else "success")
            if name == "crash":
                assert str(end.metadata["error"]) == f"crashed on {call_id[1:]}"

    async def test_a_registry_tool_offered_and_metered_is_counted_once(
        self, serve: Servers, ours: ToolRegistry
    ) -> None:
        server = serve(
            *calls(
                ("c1", "add", '{"a": 1}'),
                ("c2", "explode", '{"reason": "r"}'),
                ("c3", "double", '{"x": 1}'),
            )
        )
        with instrument(ours), telemetry.capture() as seen:
            await run_agent(server, [*function_tools(ours), double])
        assert outcomes(ours) == {"add": (1, 0), "explode": (0, 1), "double": (1, 0)}
        assert sorted(e.metadata["call_id"] for e in seen if e.event[-1] == "start") == [
            "c1",
            "c2",
            "c3",
        ]

    async def test_another_registry_counts_registry_tools_too(
        self, serve: Servers, ours: ToolRegistry, registry: ToolRegistry
    ) -> None:
        server = serve(*calls(("c1", "add", '{"a": 1}')))
        with instrument(registry):
            await run_agent(server, function_tools(ours))
        assert ours.metrics()["add"]["success"] == 1
        assert registry.metrics()["add"]["success"] == 1

    async def test_the_sdks_timeout_notice_counts_as_a_timeout(
        self, serve: Servers, registry: ToolRegistry
    ) -> None:
        server = serve(*calls(("c1", "sleepy", '{"x": 1}')))
        with instrument(registry):
            await run_agent(server, [sleepy])
        assert tool_messages(server.requests[1]) == {
            "c1": "Tool 'sleepy' timed out after 0.05 seconds."
        }
        entry = registry.metrics()["sleepy"]
        assert entry["failure"] == 1
        assert entry["last_error"]["type"] == "ToolTimeoutError"

    async def test_a_tool_that_fails_the_run_is_counted_before_the_run_fails(
        self, serve: Servers, registry: ToolRegistry
    ) -> None:
        server = serve(*calls(("c1", "crash_loudly", '{"x": 1}')))
        with instrument(registry), pytest.raises(UserError, match="loud"):
            await run_agent(server, [crash_loudly])
        entry = registry.metrics()["crash_loudly"]
        assert (entry["failure"], entry["in_flight"]) == (1, 0)
        assert entry["last_error"] == {"type": "RuntimeError", "message": "loud"}

    async def test_tools_invoked_outside_a_run_are_metered_too(
        self, registry: ToolRegistry
    ) -> None:
        # invoke_function_tool is how the SDK's realtime sessions call function tools.
        context = realtime_context()
        with instrument(registry):
            told = await agents.tool.invoke_function_tool(
                function_tool=crash, context=context, arguments='{"x": 3}'
            )
        assert told == "An error occurred while running the tool. Please try again."
        assert outcomes(registry) == {"crash": (0, 1)}
        assert registry.metrics()["crash"]["last_error"]["message"] == "crashed on 3"

    async def test_a_hidden_failure_stays_with_its_own_call_and_is_not_kept(
        self, registry: ToolRegistry
    ) -> None:
        # One ToolContext for a call that fails and one that follows: the failure noted on
        # it is the first call's alone, and nothing of it stays on the context afterwards.
        context = realtime_context()
        with instrument(registry):
            for tool_, arguments in ((crash, '{"x": 3}'), (double, '{"x": 2}')):
                await agents.tool.invoke_function_tool(
                    function_tool=tool_, context=context, arguments=arguments
                )
                assert not exceptions_on(context)
        assert outcomes(registry) == {"crash": (0, 1), "double": (1, 0)}

    async def test_a_failure_formatted_outside_a_metered_call_is_neither_counted_nor_kept(
        self, registry: ToolRegistry
    ) -> None:
        context = realtime_context()
        with instrument(registry):
            told = await agents.tool.maybe_invoke_function_tool_failure_error_function(
                function_tool=crash, context=context, error=RuntimeError("formatted alone")
            )
        assert told == "An error occurred while running the tool. Please try again."
        assert registry.metrics() == {}
        assert not exceptions_on(context)

    async def test_instrumenting_twice_counts_once_and_the_last_handle_restores_the_sdk(
        self, serve: Servers, registry: ToolRegistry
    ) -> None:
        before = sdk_as_is()
        first, second = instrument(registry), instrument(registry)
        assert sdk_as_is() != before
        await run_agent(serve(*calls(("c1", "double", '{"x": 1}'))), [double])
        assert registry.metrics()["double"]["success"] == 1
        first.uninstrument()
        first.uninstrument()  # idempotent: the other handle still meters
        await run_agent(serve(*calls(("c2", "double", '{"x": 1}'))), [double])
        assert registry.metrics()["double"]["success"] == 2
        second.uninstrument()
        assert all(now is was for now, was in zip(sdk_as_is(), before, strict=True))
        await run_agent(serve(*calls(("c3", "double", '{"x": 1}'))), [double])
        assert registry.metrics()["double"]["success"] == 2
        assert not first.active
        assert not second.active

    def test_an_sdk_without_the_wrapped_functions_is_refused_whole(
        self, monkeypatch: pytest.MonkeyPatch, registry: ToolRegistry
    ) -> None:
        before = sdk_as_is()
        monkeypatch.delattr(MCPUtil, "_extract_custom_data")
        with pytest.raises(
            RuntimeError, match=r"supports openai-agents 0\.24.*_extract_custom_data"
        ):
            instrument(registry)
        monkeypatch.undo()
        assert all(now is was for now, was in zip(sdk_as_is(), before, strict=True))
        with instrument(registry):  # nothing was left half-installed
            pass
        assert all(now is was for now, was in zip(sdk_as_is(), before, strict=True))


MCP_TOOLS = Path(__file__).parent / "mcp_server" / "tools_module.py"


@pytest.mark.slow
async def test_mcp_tool_calls_are_metered_and_is_error_counts_as_a_failure(
    serve: Servers, registry: ToolRegistry
) -> None:
    server = serve(
        *calls(("m-ok", "add", '{"a": 1, "b": 2}'), ("m-bad", "divide", '{"a": 1, "b": 0}'))
    )
    params = {"command": sys.executable, "args": ["-m", "codex_tools", "mcp", str(MCP_TOOLS)]}
    mcp = MCPServerStdio(params, client_session_timeout_seconds=30)
    async with mcp:
        with instrument(registry), telemetry.capture() as seen:
            agent = Agent(name="helper", mcp_servers=[mcp], model=model_on(server))
            await Runner.run(agent, "go", run_config=RunConfig(tracing_disabled=True))
    told = tool_messages(server.requests[1])
    assert "ZeroDivisionError" in json.dumps(told["m-bad"])  # the SDK passes the text on
    assert outcomes(registry) == {"add": (1, 0), "divide": (0, 1)}
    assert registry.metrics()["divide"]["last_error"] == {
        "type": "ToolExecutionError",
        "message": "tool 'divide' failed: ZeroDivisionError: float division by zero",
    }
    assert {e.metadata["call_id"] for e in seen} == {"m-ok", "m-bad"}
    assert {e.metadata["originator"] for e in seen} == {"openai-agents"}


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
