"""The LangChain adapter: real ``create_agent`` agents driven by a scripted chat model,
fully offline, with our tools offered to them and their own tools metered."""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent
from langchain.agents.middleware import ToolRetryMiddleware
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import ToolException
from langchain_core.tools import tool as lc_tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.uuid import uuid7
from langgraph.checkpoint.memory import InMemorySaver

from codex_tools import Tool, ToolRegistry, telemetry, tool
from codex_tools.contrib.langchain import (
    MeteredToolMiddleware,
    MeteringCallbackHandler,
    structured_tools,
)


class ScriptedChat(FakeMessagesListChatModel):
    """A chat model that replays ``responses`` and keeps every request it was sent."""

    requests: list[list[BaseMessage]] = []  # noqa: RUF012  (a pydantic field: copied per model)
    bound: list[Any] = []  # noqa: RUF012

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChat:
        self.bound = list(tools)
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.requests.append(list(messages))
        return super()._generate(messages, *args, **kwargs)


def call(name: str, call_id: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def scripted(*calls: dict[str, Any]) -> ScriptedChat:
    """One turn that asks for ``calls``, then a final answer."""
    return ScriptedChat(responses=[AIMessage("", tool_calls=list(calls)), AIMessage("done")])


def counts(registry: ToolRegistry, name: str) -> tuple[int, int]:
    row = registry.metrics()[name]
    assert row["in_flight"] == 0
    return row["success"], row["failure"]


def tool_messages(messages: Sequence[BaseMessage]) -> dict[str, ToolMessage]:
    return {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}


async def run_agent(agent: Any, use_async: bool, config: dict[str, Any] | None = None) -> Any:
    state = {"messages": [("user", "go")]}
    if use_async:
        return await agent.ainvoke(state, config)
    return agent.invoke(state, config)


@lc_tool
def lookup(user: int) -> str:
    """Look a user up."""
    return f"user {user} is Ada"


@lc_tool
def refuse(reason: str) -> str:
    """Refuses, as a LangChain tool does: a ToolException the tool handles itself."""
    raise ToolException(f"refused: {reason}")


refuse.handle_tool_error = True


@lc_tool
def crash(reason: str) -> str:
    """Raises what LangChain does not handle."""
    raise RuntimeError(reason)


@pytest.fixture
def ours(registry: ToolRegistry) -> ToolRegistry:
    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    async def explode(reason: str) -> str:
        """Always fails."""
        raise ValueError(reason)

    registry.register(add)
    registry.register(explode)
    return registry


class TestOurToolsOffered:
    @pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
    async def test_agent_sees_outputs_and_failures_as_messages(
        self, ours: ToolRegistry, use_async: bool
    ) -> None:
        model = scripted(
            call("add", "call-ok", a=1, b=2),
            call("explode", "call-bad", reason="no fuel"),
            call("add", "call-args", a="one", b=2),
        )
        agent = create_agent(model, tools=structured_tools(ours), checkpointer=InMemorySaver())
        with telemetry.capture() as events:
            result = await run_agent(agent, use_async, {"configurable": {"thread_id": "t-7"}})

        assert result["messages"][-1].content == "done"
        seen = tool_messages(model.requests[1])  # what the model was sent after the tools ran
        assert seen == tool_messages(result["messages"])
        assert (seen["call-ok"].content, seen["call-ok"].status) == ("3", "success")
        assert seen["call-bad"].status == "error"
        assert "ValueError: no fuel" in seen["call-bad"].content
        assert seen["call-args"].status == "error"
        assert "invalid arguments for tool 'add'" in seen["call-args"].content

        metrics = ours.metrics()
        assert (metrics["add"]["success"], metrics["add"]["failure"]) == (1, 1)
        assert metrics["add"]["last_error"]["type"] == "ToolArgumentsError"
        assert (metrics["explode"]["success"], metrics["explode"]["failure"]) == (0, 1)
        assert metrics["explode"]["last_error"] == {"type": "ValueError", "message": "no fuel"}
        assert metrics["add"]["total_latency_ms"] > 0
        ends = {e.metadata["call_id"]: e for e in events if e.event[-1] != "start"}
        assert {k: e.metadata["result"] for k, e in ends.items()} == {
            "call-ok": "ok",
            "call-bad": "error",
            "call-args": "error",
        }
        assert {e.metadata["originator"] for e in events} == {"langchain"}
        assert {e.metadata["thread_id"] for e in events} == {"t-7"}

    def test_model_is_offered_the_registry_schema_and_description(self, ours: ToolRegistry) -> None:
        model = ScriptedChat(responses=[AIMessage("nothing to do")])
        create_agent(model, tools=structured_tools(ours)).invoke({"messages": [("user", "hi")]})
        offered = {t.name: convert_to_openai_tool(t)["function"] for t in model.bound}
        assert set(offered) == {"add", "explode"}
        assert offered["add"]["description"] == "Add two integers."
        schema = ours.lookup("add").parameters
        assert offered["add"]["parameters"]["required"] == schema["required"]
        assert offered["add"]["parameters"]["properties"].keys() == schema["properties"].keys()

    def test_disabled_tool_is_not_offered_and_a_refused_call_is_an_error(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(Tool(name="off", fn=lambda: "x", enabled=False))
        registry.register(Tool(name="gated", fn=lambda: "x", enabled=lambda ctx: False))
        [gated] = structured_tools(registry)
        message = gated.invoke(call("gated", "c-1"))
        assert (message.status, message.content) == ("error", "tool 'gated' is disabled")
        assert registry.metrics() == {}  # as for the registry: a refused call is not counted

    def test_mcp_annotations_travel_in_metadata(self, registry: ToolRegistry) -> None:
        read = tool(name="read", read_only=True, destructive=False)(lambda key: key)
        registry.register(read)
        [offered] = structured_tools(registry)
        # where langchain-mcp-adapters puts an MCP tool's annotations
        assert offered.metadata == {"readOnlyHint": True, "destructiveHint": False}

    async def test_every_way_langchain_calls_a_tool_reaches_the_registry(
        self, ours: ToolRegistry
    ) -> None:
        [add, _] = structured_tools(ours)
        assert add.invoke({"a": 2, "b": 3}) == 5
        assert await add.ainvoke({"a": 2, "b": 3}) == 5
        assert add.invoke('{"a": 1, "b": 1}') == 2  # a JSON string, as some callers send
        assert add.run({"a": 1, "b": 0}) == 1  # no config at all
        assert await add.arun({"a": 1, "b": 0}) == 1
        assert counts(ours, "add") == (5, 0)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        args=st.one_of(
            st.dictionaries(st.text(), st.one_of(st.integers(), st.text(), st.none())),
            st.fixed_dictionaries({"a": st.integers(), "b": st.integers()}),
            st.lists(st.integers()),
        )
    )
    def test_any_arguments_end_in_a_message_and_one_count(self, args: Any) -> None:
        registry = ToolRegistry()

        @tool
        def add(a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        registry.register(add)
        [offered] = structured_tools(registry)
        hostile_id = "c\udcff\x00[b]x[/b]"
        message = offered.invoke(
            {"name": "add", "args": args, "id": hostile_id, "type": "tool_call"}
        )
        assert isinstance(message, ToolMessage)
        assert message.tool_call_id == hostile_id
        assert message.status in {"success", "error"}
        counts = registry.metrics()["add"]
        assert counts["success"] + counts["failure"] == 1
        assert (message.status == "error") == (counts["failure"] == 1)


class TestAgentToolsMetered:
    @pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
    @pytest.mark.parametrize("how", ["middleware", "callbacks"])
    async def test_every_call_counts_once_with_what_the_model_saw(
        self, ours: ToolRegistry, use_async: bool, how: str
    ) -> None:
        model = scripted(
            call("lookup", "own-ok", user=7),
            call("lookup", "own-args", user="seven"),
            call("refuse", "own-handled", reason="policy"),
            call("add", "ours-ok", a=1, b=2),  # ours: the registry counts it, nobody else
        )
        config: dict[str, Any] = {"configurable": {"thread_id": "t-9"}}
        middleware: list[Any] = []
        if how == "middleware":
            middleware.append(MeteredToolMiddleware(ours))
        else:
            config["callbacks"] = [MeteringCallbackHandler(ours)]
        agent = create_agent(
            model,
            tools=[lookup, refuse, *structured_tools(ours)],
            middleware=middleware,
            checkpointer=InMemorySaver(),
        )
        with telemetry.capture() as events:
            result = await run_agent(agent, use_async, config)

        seen = tool_messages(model.requests[1])
        assert seen == tool_messages(result["messages"])
        assert (seen["own-ok"].content, seen["own-ok"].status) == ("user 7 is Ada", "success")
        assert seen["own-args"].status == "error"
        assert (seen["own-handled"].content, seen["own-handled"].status) == (
            "refused: policy",
            "error",
        )
        assert (seen["ours-ok"].content, seen["ours-ok"].status) == ("3", "success")

        assert counts(ours, "lookup") == (1, 1)
        assert counts(ours, "refuse") == (0, 1)
        assert counts(ours, "add") == (1, 0)
        metrics = ours.metrics()
        assert metrics["refuse"]["last_error"] == {
            "type": "ToolException",
            "message": "refused: policy",
        }
        # The middleware sees the tool node's message; the callbacks see pydantic's error.
        assert metrics["lookup"]["last_error"]["type"] == (
            "ToolException" if how == "middleware" else "ValidationError"
        )
        assert metrics["lookup"]["total_latency_ms"] > 0
        ends = {e.metadata["call_id"]: e.metadata for e in events if e.event[-1] != "start"}
        assert {k: m["result"] for k, m in ends.items()} == {
            "own-ok": "ok",
            "own-args": "error",
            "own-handled": "error",
            "ours-ok": "ok",
        }
        assert {m["originator"] for m in ends.values()} == {"langchain"}
        assert {m["thread_id"] for m in ends.values()} == {"t-9"}
        assert ends["own-ok"]["output"] == "user 7 is Ada"

    @pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
    async def test_unhandled_error_is_counted_and_still_ends_the_run(
        self, registry: ToolRegistry, use_async: bool
    ) -> None:
        agent = create_agent(
            scripted(call("crash", "own-crash", reason="disk on fire")),
            tools=[crash],
            middleware=[MeteredToolMiddleware(registry)],
        )
        with pytest.raises(RuntimeError, match="disk on fire"):
            await run_agent(agent, use_async)
        assert counts(registry, "crash") == (0, 1)
        assert registry.metrics()["crash"]["last_error"]["type"] == "RuntimeError"

    @pytest.mark.parametrize(("inner", "expected"), [(True, (1, 2)), (False, (1, 0))])
    @pytest.mark.parametrize("use_async", [False, True], ids=["invoke", "ainvoke"])
    async def test_every_retry_counts_when_listed_after_the_retry_middleware(
        self, registry: ToolRegistry, inner: bool, expected: tuple[int, int], use_async: bool
    ) -> None:
        tries: list[int] = []

        @lc_tool
        def fetch(url: str) -> str:
            """Fails twice, as a flaky network does."""
            tries.append(1)
            if len(tries) < 3:
                raise ConnectionError("reset by peer")
            return "<html>"

        retry = ToolRetryMiddleware(max_retries=2, initial_delay=0, jitter=False)
        metered = MeteredToolMiddleware(registry)
        agent = create_agent(
            scripted(call("fetch", "call-r", url="http://x")),
            tools=[fetch],
            middleware=[retry, metered] if inner else [metered, retry],
        )
        with telemetry.capture() as events:
            result = await run_agent(agent, use_async)

        assert tool_messages(result["messages"])["call-r"].content == "<html>"
        assert counts(registry, "fetch") == expected
        if inner:
            starts = [e.metadata for e in events if e.event[-1] == "start"]
            assert [(m["call_id"], m["attempt"], m["retry"]) for m in starts] == [
                ("call-r", 1, False),
                ("call-r", 2, True),
                ("call-r", 3, True),
            ]
            assert registry.metrics()["fetch"]["retries"] == 2
            assert registry.metrics()["fetch"]["last_error"]["type"] == "ConnectionError"

    @pytest.mark.usefixtures("tiny_switch_interval")
    def test_many_calls_in_one_turn_on_worker_threads_count_exactly(
        self, ours: ToolRegistry
    ) -> None:
        calls = [call("lookup", f"own-{i}", user=i) for i in range(40)]
        calls += [call("refuse", f"no-{i}", reason="x") for i in range(20)]
        calls += [call("add", f"ours-{i}", a=i, b=1) for i in range(40)]
        model = scripted(*calls)
        agent = create_agent(
            model,
            tools=[lookup, refuse, *structured_tools(ours)],
            middleware=[MeteredToolMiddleware(ours)],
        )
        agent.invoke({"messages": [("user", "go")]})  # the tool node runs them in a pool
        assert len(tool_messages(model.requests[1])) == 100
        assert counts(ours, "lookup") == (40, 0)
        assert counts(ours, "refuse") == (0, 20)
        assert counts(ours, "add") == (40, 0)

    @pytest.mark.parametrize("how", ["middleware", "callbacks"])
    async def test_a_cancelled_run_ends_every_call_it_started(
        self, ours: ToolRegistry, how: str
    ) -> None:
        @lc_tool
        async def stuck() -> str:
            """Never answers."""
            await asyncio.Event().wait()
            return "never"

        @tool
        async def hang() -> str:
            """Never answers either."""
            await asyncio.Event().wait()
            return "never"

        ours.register(hang)
        metering: Any = MeteredToolMiddleware(ours)
        agent = create_agent(
            scripted(call("stuck", "own"), call("hang", "ours")),
            tools=[stuck, *structured_tools(ours)],
            middleware=[metering] if how == "middleware" else [],
        )
        config: Any = {} if how == "middleware" else {"callbacks": [MeteringCallbackHandler(ours)]}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agent.ainvoke({"messages": [("user", "go")]}, config), 0.3)
        for name in ("stuck", "hang"):
            assert counts(ours, name) == (0, 1)
            assert ours.metrics()[name]["last_error"]["type"] == "CancelledError"

    async def test_registry_tool_counts_once_under_middleware_and_callbacks(
        self, ours: ToolRegistry
    ) -> None:
        agent = create_agent(
            scripted(call("add", "c1", a=1, b=2), call("explode", "c2", reason="x")),
            tools=structured_tools(ours),
            middleware=[MeteredToolMiddleware(ours)],
        )
        await agent.ainvoke(
            {"messages": [("user", "go")]}, {"callbacks": [MeteringCallbackHandler(ours)]}
        )
        assert counts(ours, "add") == (1, 0)
        assert counts(ours, "explode") == (0, 1)

    async def test_registry_tool_is_metered_by_another_registry(self, ours: ToolRegistry) -> None:
        other = ToolRegistry()
        agent = create_agent(
            scripted(call("add", "c1", a=1, b=2)),
            tools=structured_tools(ours),
            middleware=[MeteredToolMiddleware(other)],
        )
        await agent.ainvoke({"messages": [("user", "go")]})
        assert counts(ours, "add") == counts(other, "add") == (1, 0)


class TestCallbackHandler:
    def test_meters_tools_run_by_any_runnable(self, registry: ToolRegistry) -> None:
        handler = MeteringCallbackHandler(registry)
        config: Any = {"callbacks": [handler]}
        chain = RunnableLambda(lambda user: {"user": user}) | lookup
        assert chain.invoke(3, config) == "user 3 is Ada"
        with telemetry.capture() as events:
            message = refuse.invoke(call("refuse", "c-1", reason="no"), config)
        assert (message.content, message.status) == ("refused: no", "error")
        with pytest.raises(RuntimeError):
            crash.invoke({"reason": "boom"}, config)

        assert counts(registry, "lookup") == (1, 0)
        assert counts(registry, "refuse") == (0, 1)
        assert counts(registry, "crash") == (0, 1)
        assert registry.metrics()["crash"]["last_error"] == {
            "type": "RuntimeError",
            "message": "boom",
        }
        assert [(e.metadata["call_id"], e.metadata["originator"]) for e in events] == [
            ("c-1", "langchain"),
            ("c-1", "langchain"),
        ]

    def test_end_of_a_run_it_never_saw_is_ignored(self, registry: ToolRegistry) -> None:
        handler = MeteringCallbackHandler(registry)
        handler.on_tool_end("late", run_id=uuid7())
        handler.on_tool_error(ValueError("late"), run_id=uuid7())
        assert registry.metrics() == {}


class TestImports:
    def test_core_import_pulls_in_no_framework(self) -> None:
        code = (
            "import sys, codex_tools; "
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('langchain', 'langchain_core', 'langgraph'))))"
        )
        out = subprocess.run(
            [sys.executable, "-c", "import json; " + code],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert json.loads(out) == []

    def test_missing_extra_names_the_pip_install(
        self, uninstalled: Callable[[str, str], None]
    ) -> None:
        uninstalled("langchain_core", "codex_tools.contrib.langchain")
        with pytest.raises(ImportError, match=r"pip install 'codex-tools\[langchain\]'"):
            importlib.import_module("codex_tools.contrib.langchain")
