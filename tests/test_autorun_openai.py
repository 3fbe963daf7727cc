"""OpenAIChatModel with the real ``openai`` client against a loopback Chat Completions server."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from chat_server import SERVER_ERROR, Servers, completion
from codex_tools import ToolRegistry, telemetry, tool
from codex_tools.autorun import OpenAIChatModel, arun_auto, run_auto


@pytest.fixture
def serve() -> Iterator[Servers]:
    servers = Servers()
    yield servers
    servers.close()


def weather_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @tool
    async def weather(city: str) -> dict[str, Any]:
        """Current weather of a city."""
        if city == "Atlantis":
            raise LookupError(f"no station in {city}")
        return {"city": city, "celsius": 21}

    registry.register(add)
    registry.register(weather)
    return registry


async def test_a_session_with_a_retried_5xx_and_parallel_tool_calls(serve: Servers) -> None:
    server = serve(
        SERVER_ERROR,
        completion(1, ("call_a", "add", '{"a": 2, "b": 3}')),
        completion(2, ("call_p", "weather", '{"city": "Paris"}'),
                   ("call_x", "weather", '{"city": "Atlantis"}')),
        completion(3, content="5, and 21 °C in Paris; Atlantis has no station."),
    )  # fmt: skip
    registry = weather_registry()
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=2, timeout=10
    ) as client:
        with telemetry.capture(telemetry.TOOL_EVENTS[0]) as starts:
            result = await arun_auto(
                OpenAIChatModel("test-model", client=client), "add 2+3, weather", registry=registry
            )

    assert result.final_response == "5, and 21 °C in Paris; Atlantis has no station."
    assert result.attempts == 3
    assert result.usage == {"input_tokens": 30, "output_tokens": 6, "cached_input_tokens": 3}
    assert [(o.call_id, o.output) for o in result.tool_outputs] == [
        ("call_a", 5),
        ("call_p", {"city": "Paris", "celsius": 21}),
    ]
    assert [(f.call_id, f.error_type) for f in result.tool_failures] == [
        ("call_x", "ToolExecutionError")
    ]
    tags = [(e.metadata["turn_id"], e.metadata["call_id"], e.metadata["attempt"]) for e in starts]
    assert sorted(tags) == [
        ("chatcmpl-1", "call_a", 1),
        ("chatcmpl-2", "call_p", 2),
        ("chatcmpl-2", "call_x", 2),
    ]

    # The server saw the 5xx retried with the same body, then the conversation grow.
    assert server.paths == ["/v1/chat/completions"] * 4
    first, retried, second, third = server.requests
    assert retried == first
    assert first["model"] == "test-model"
    assert first["messages"] == [{"role": "user", "content": "add 2+3, weather"}]
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "weather"]
    add_spec = first["tools"][0]
    assert add_spec["type"] == "function"
    assert add_spec["function"]["description"] == "Add two integers."
    assert add_spec["function"]["parameters"] == registry.lookup("add").parameters
    assert second["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "5"},
    ]
    assert second["messages"] == third["messages"][:3]
    assistant, paris, atlantis = third["messages"][3:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_p", "call_x"]
    assert paris == {
        "role": "tool",
        "tool_call_id": "call_p",
        "content": '{"city": "Paris", "celsius": 21}',
    }
    assert atlantis["tool_call_id"] == "call_x"
    error = json.loads(atlantis["content"])["error"]
    assert error["type"] == "ToolExecutionError"
    assert "LookupError: no station in Atlantis" in error["message"]


def test_the_model_opens_its_own_client_from_base_url(serve: Servers) -> None:
    server = serve(
        completion(1, ("call_1", "teleport", '{"to": "mars"}')),
        completion(2, content="I cannot teleport."),
    )
    result = run_auto(
        OpenAIChatModel("local-model", base_url=server.base_url),
        "go to mars",
        registry=weather_registry(),
    )
    assert result.final_response == "I cannot teleport."
    assert result.tool_failures[0].error_type == "ToolNotFoundError"
    tool_message = server.requests[1]["messages"][-1]
    assert json.loads(tool_message["content"])["error"]["type"] == "ToolNotFoundError"


def test_a_sync_client_is_run_in_a_worker_thread(serve: Servers) -> None:
    server = serve(SERVER_ERROR, completion(1, content="hello"))
    with openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=1) as client:
        result = run_auto(OpenAIChatModel("m", client=client), "hi", registry=ToolRegistry())
    assert result.final_response == "hello"
    assert "tools" not in server.requests[-1]  # no tools registered: none offered
    assert len(server.requests) == 2


def test_a_client_and_connection_options_together_are_refused() -> None:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="sk-test")
    with pytest.raises(ValueError, match="either a client or base_url"):
        OpenAIChatModel("m", client=client, base_url="http://127.0.0.1:9/v1")
    client.close()


def test_without_the_openai_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ImportError, match=r"pip install 'codex-tools\[openai\]'"):
        OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1")


async def test_a_server_error_that_outlasts_the_client_retries_ends_the_run(
    serve: Servers,
) -> None:
    server = serve(SERVER_ERROR, SERVER_ERROR)
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=1, timeout=10
    ) as client:
        with pytest.raises(openai.InternalServerError):
            await arun_auto(OpenAIChatModel("m", client=client), "hi", registry=ToolRegistry())
    assert len(server.requests) == 2


def test_a_disabled_tool_is_not_offered(serve: Servers) -> None:
    registry = weather_registry()

    @tool(enabled=False)
    def launch() -> None:
        """Not today."""

    registry.register(launch)
    server = serve(completion(1, content="no launch"))
    run_auto(OpenAIChatModel("m", base_url=server.base_url), "launch", registry=registry)
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["add", "weather"]
