"""OpenAIChatModel with the real ``openai`` client against a loopback Chat Completions server."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console

from chat_server import HANG, MALFORMED, SERVER_ERROR, Servers, completion
from codex_tools import ToolDefinitionError, ToolRegistry, telemetry, tool
from codex_tools._cli._calls import print_calls
from codex_tools._cli._table import metrics_table
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
        ("chatcmpl-2", "call_p", 1),
        ("chatcmpl-2", "call_x", 1),
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


class TestMalformedCompletions:
    """Whatever a server answers is a turn or a ValueError saying what was wrong."""

    @pytest.mark.parametrize(
        ("mode", "message"),
        [
            ("html", "not JSON ('<!DOCTYPE html>"),
            ("array", "the server's answer is an array, not a chat completion"),
            ("no_choices", "the completion has no choices"),
            ("null_message", "the first choice has 'message' null, not an object"),
            ("call_without_function", "tool call 0 has 'function' null, not an object"),
            ("call_of_another_type", "tool call 0 has type 'custom'"),
            ("tool_calls_not_a_list", "the message has 'tool_calls' a string, not an array"),
            ("call_not_an_object", "tool call 0 is a string, not an object"),
            ("function_without_name", "tool call 0's function has 'name' null, not a string"),
            ("content_not_a_string", "the message has 'content' an array, not a string"),
            (
                "cut_off_with_nothing_said",
                "no content and no tool calls (finish_reason 'length'): it ran out of tokens",
            ),
            ("only_whitespace_said", "no content and no tool calls (finish_reason 'stop')"),
            ("an_error_with_status_200", "the server answered an error: model 'm' not loaded"),
            ("nested_too_deep", "the server's answer is not JSON ('[[[["),
        ],
    )
    def test_is_a_value_error_that_names_the_fault(
        self, serve: Servers, mode: str, message: str
    ) -> None:
        server = serve(MALFORMED[mode])
        registry = weather_registry()
        model = OpenAIChatModel("m", base_url=server.base_url)
        with pytest.raises(ValueError, match=re.escape(message)) as caught:
            run_auto(model, "add", registry=registry)
        assert type(caught.value) is ValueError  # not a JSONDecodeError, say
        assert registry.metrics() == {}  # no call was half-read and run

    def test_a_call_without_an_id_gets_one_used_in_the_next_request(self, serve: Servers) -> None:
        first = completion(1, ("", "add", '{"a": 1, "b": 2}'), ("", "add", '{"a": 2, "b": 2}'))
        for call in first[1]["choices"][0]["message"]["tool_calls"]:
            del call["id"]
        server = serve(first, completion(2, content="3 and 4"))
        result = run_auto(
            OpenAIChatModel("m", base_url=server.base_url), "add", registry=weather_registry()
        )
        ids = [output.call_id for output in result.tool_outputs]
        assert len(set(ids)) == 2
        assert all(each.startswith("call_") for each in ids)
        assistant, *tools = server.requests[1]["messages"][1:]
        assert [call["id"] for call in assistant["tool_calls"]] == ids
        assert [message["tool_call_id"] for message in tools] == ids

    def test_lenient_where_the_meaning_is_plain_and_the_rest_goes_back_to_the_model(
        self, serve: Servers
    ) -> None:
        registry = weather_registry()

        @registry.register
        @tool
        def ping() -> str:
            return "pong"

        status, body = completion(
            1, ("c_untyped", "ping", "{}"), ("c_null", "ping", ""), ("c_null_add", "add", ""),
            ("c_number", "add", ""), ("c_dup", "ping", "{}"), ("c_dup", "ping", "{}"),
        )  # fmt: skip
        calls = body["choices"][0]["message"]["tool_calls"]
        del calls[0]["type"]  # a missing type is a function call
        calls[1]["function"]["arguments"] = None  # null arguments are no arguments
        calls[2]["function"]["arguments"] = None
        calls[3]["function"]["arguments"] = 42  # not an object: the schema refuses it
        server = serve((status, body), completion(2, content="done"))
        result = run_auto(OpenAIChatModel("m", base_url=server.base_url), "go", registry=registry)
        assert [(o.call_id, o.output) for o in result.tool_outputs][:2] == [
            ("c_untyped", "pong"),
            ("c_null", "pong"),
        ]
        assert [(f.call_id, f.error_type) for f in result.tool_failures] == [
            ("c_null_add", "ToolArgumentsError"),
            ("c_number", "ToolArgumentsError"),
        ]
        duplicated = [o.call_id for o in result.tool_outputs[2:]]
        assert duplicated[0] == "c_dup"
        assert duplicated[1] not in ("c_dup", "c_number")
        sent = [m["tool_call_id"] for m in server.requests[1]["messages"] if m["role"] == "tool"]
        assert len(sent) == len(set(sent)) == 6  # every call answered, each under its own id


def test_the_instructions_and_the_text_beside_tool_calls_are_sent_back(serve: Servers) -> None:
    server = serve(
        completion(1, ("c1", "add", '{"a": 1, "b": 2}'), content="Let me add."),
        completion(2, content="3"),
    )
    model = OpenAIChatModel("m", base_url=server.base_url)
    run_auto(model, "1+2?", registry=weather_registry(), instructions="Be brief.")
    system, user, assistant, answer = server.requests[1]["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user == {"role": "user", "content": "1+2?"}
    assert assistant["content"] == "Let me add."
    assert answer == {"role": "tool", "tool_call_id": "c1", "content": "3"}


def test_outputs_json_cannot_hold_and_text_utf8_cannot_hold_are_sent_as_text(
    serve: Servers,
) -> None:
    registry = ToolRegistry()
    outputs: dict[str, Any] = {
        "tuple_keys": {("a", 1): 2},
        "a_set": {3},
        "raw_bytes": b"\xff\x00",
        "surrogate": "caf\udce9.txt",
    }
    for name, value in outputs.items():
        registry.register(lambda value=value: value, name=name, description="hostile output")
    calls = [(f"c_{name}", name, "{}") for name in outputs]
    server = serve(completion(1, *calls), completion(2, content="seen"))
    result = run_auto(OpenAIChatModel("m", base_url=server.base_url), "go", registry=registry)
    assert result.final_response == "seen"
    sent = {m["tool_call_id"]: m["content"] for m in server.requests[1]["messages"][2:]}
    assert sent == {
        "c_tuple_keys": "{('a', 1): 2}",
        "c_a_set": "[3]",
        "c_raw_bytes": '"\\\\xff\\u0000"',
        "c_surrogate": "caf\\udce9.txt",
    }


def test_a_tool_name_openai_would_refuse_is_an_error_before_any_request(
    serve: Servers,
) -> None:
    server = serve(completion(1, content="never asked"))
    registry = weather_registry()
    registry.register(lambda: 1, name="web search", description="spaces are refused")
    with pytest.raises(ValueError, match="tool 'web search' cannot be offered") as caught:
        run_auto(OpenAIChatModel("m", base_url=server.base_url), "go", registry=registry)
    assert isinstance(caught.value, ToolDefinitionError)
    assert caught.value.tool == "web search"
    assert server.requests == []


async def test_timeout_bounds_each_request_also_through_a_given_client(serve: Servers) -> None:
    server = serve((200, HANG))
    async with openai.AsyncOpenAI(
        base_url=server.base_url, api_key="sk-test", max_retries=0, timeout=600
    ) as client:
        with pytest.raises(openai.APITimeoutError):
            await arun_auto(
                OpenAIChatModel("m", client=client, timeout=0.2), "hi", registry=ToolRegistry()
            )


@pytest.mark.parametrize("bad", [0, -1, "60", True])
def test_a_bad_timeout_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="timeout must be"):
        OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", timeout=bad)


HOSTILE_TEXT = st.lists(
    st.one_of(
        st.text(st.characters(exclude_categories=())),  # lone surrogates included
        st.sampled_from(["[bold]", "[/]", "fetch[/api]", "\x1b[2J", "\x00", "\r\n", "\u202e"]),
    ),
    max_size=8,
).map("".join)


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(HOSTILE_TEXT, min_size=1, max_size=3))
@example(texts=["x" * 1_000_000])
@example(texts=["\udcff[bold]\x00" * 350_000, ""])
def test_any_tool_output_or_error_text_reaches_the_model_and_is_counted(
    texts: list[str],
) -> None:
    registry = ToolRegistry()

    @tool
    def echo(i: int) -> str:
        return texts[i]

    @tool
    def fail(i: int) -> str:
        raise RuntimeError(texts[i])

    registry.register(echo)
    registry.register(fail)
    calls = [(f"e{i}", "echo", f'{{"i": {i}}}') for i in range(len(texts))]
    calls += [(f"f{i}", "fail", f'{{"i": {i}}}') for i in range(len(texts))]
    servers = Servers()
    try:
        server = servers(completion(1, *calls), completion(2, content="done"))
        screen = io.StringIO()
        with print_calls(Console(file=screen, width=80)):
            result = run_auto(
                OpenAIChatModel("m", base_url=server.base_url), "go", registry=registry
            )
    finally:
        servers.close()
    assert result.final_response == "done"
    assert len(server.requests) == 2  # every request was answered
    stats = registry.metrics()
    assert (stats["echo"]["success"], stats["echo"]["failure"]) == (len(texts), 0)
    assert (stats["fail"]["success"], stats["fail"]["failure"]) == (0, len(texts))
    sent = {m["tool_call_id"]: m["content"] for m in server.requests[1]["messages"][2:]}
    for i, text in enumerate(texts):
        assert sent[f"e{i}"] == text.encode("utf-8", "backslashreplace").decode()
        error = json.loads(sent[f"f{i}"])["error"]
        assert error["type"] == "ToolExecutionError"
        assert len(error["message"]) <= 1000
    assert len(screen.getvalue().splitlines()) == 2 * len(texts)  # one line per call
    metrics_table(stats, 80)
