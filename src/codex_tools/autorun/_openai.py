"""A model behind any server that speaks OpenAI's Chat Completions tool calling
(OpenAI, Ollama, vLLM, llama.cpp, ...), through the official ``openai`` package.

The completion is read from the response body here rather than through the client's
models, which accept almost anything: whatever a server answers is either a turn or a
``ValueError`` that says what was wrong with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from codex_tools._errors import ToolDefinitionError
from codex_tools.autorun._events import turn_from_events
from codex_tools.autorun._model import Conversation, Turn, Usage, new_id

if TYPE_CHECKING:
    import openai

    from codex_tools import Tool

__all__ = ["OpenAIChatModel"]

#: The tool names the OpenAI API accepts.
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _import_openai() -> None:
    try:
        import openai  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "OpenAIChatModel needs the openai package: pip install 'codex-tools[openai]'"
        ) from error


class OpenAIChatModel:
    """Ask a Chat Completions model for each turn, with the registry's tools on offer.

    The whole conversation is sent every turn: the instructions as the system message,
    the input as the user message, each earlier turn as an assistant message with its text
    and ``tool_calls``, and each result as a ``tool`` message (a failure as
    ``{"error": {"type", "message"}}``). Usage is reported as ``input_tokens``,
    ``cached_input_tokens`` and ``output_tokens``, as Codex does.

    ``timeout`` (seconds) bounds each request, also through a ``client`` you give (an
    ``openai.AsyncOpenAI``, or an ``openai.OpenAI`` that then runs in a worker thread, to
    control retries and connection reuse); ``None`` leaves it to the client. Without a
    client each turn opens and closes an ``AsyncOpenAI`` for ``base_url`` and ``api_key``
    (which default to the ``OPENAI_*`` environment variables; a local server needs no key).
    """

    def __init__(
        self,
        model: str,
        client: openai.AsyncOpenAI | openai.OpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 60.0,
    ) -> None:
        _import_openai()
        if client is not None and (base_url is not None or api_key is not None):
            raise ValueError("pass either a client or base_url/api_key, not both")
        if timeout is not None and not (
            isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")
        self.model = model
        self.timeout = timeout
        self._client = client
        self._base_url = base_url
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if self._api_key is None and (base_url or os.environ.get("OPENAI_BASE_URL")):
            self._api_key = "unused"  # local servers ignore it; the client insists on one

    def __repr__(self) -> str:
        return f"OpenAIChatModel({self.model!r})"

    async def next_turn(self, conversation: Conversation) -> Turn:
        request: dict[str, Any] = {"model": self.model, "messages": chat_messages(conversation)}
        tools = chat_tools(conversation.tools)
        if tools:
            request["tools"] = tools
        request = _encodable(request)
        if self.timeout is not None:
            request["timeout"] = self.timeout
        return turn_from_completion(await self._complete(request))

    async def _complete(self, request: dict[str, Any]) -> bytes:
        """The body of the server's answer (an error status raises the client's error)."""
        import openai  # present: __init__ checked

        client = self._client
        body: bytes
        if client is None:
            async with openai.AsyncOpenAI(base_url=self._base_url, api_key=self._api_key) as own:
                body = (await own.chat.completions.with_raw_response.create(**request)).content
            return body
        if isinstance(client, openai.AsyncOpenAI):
            body = (await client.chat.completions.with_raw_response.create(**request)).content
            return body
        sync_client = client

        def create() -> bytes:
            body: bytes = sync_client.chat.completions.with_raw_response.create(**request).content
            return body

        return await asyncio.to_thread(create)


def chat_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """The ``tools`` parameter: every tool not switched off, as a function.

    A name the API would refuse is a :class:`ToolDefinitionError` (a ``ValueError``) here,
    before any request is sent.
    """
    offered = [tool for tool in tools if tool.enabled is not False]
    for tool in offered:
        check_name(tool.name)
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in offered
    ]


def check_name(name: str) -> None:
    """A tool name the OpenAI API would refuse is a :class:`ToolDefinitionError`."""
    if not _TOOL_NAME.fullmatch(name):
        raise ToolDefinitionError(
            f"tool {name!r} cannot be offered to an OpenAI model: "
            f"its name must match ^[a-zA-Z0-9_-]{{1,64}}$",
            tool=name,
        )


def chat_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation so far as Chat Completions messages."""
    messages: list[dict[str, Any]] = []
    if conversation.instructions is not None:
        messages.append({"role": "system", "content": conversation.instructions})
    messages.append({"role": "user", "content": conversation.input})
    for record in conversation.turns:
        calls = record.turn.tool_calls
        if not calls:
            continue
        messages.append(
            {
                "role": "assistant",
                "content": record.turn.text,
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments_json},
                    }
                    for call in calls
                ],
            }
        )
        messages.extend(
            {"role": "tool", "tool_call_id": result.call_id, "content": result.content}
            for result in record.results
        )
    return messages


def _encodable(value: Any) -> Any:
    """``value`` with every string made encodable as UTF-8, as the request body must be:
    a lone surrogate (a file name ``os.listdir`` could not decode) becomes its escape."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode()
        return value
    if isinstance(value, Mapping):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encodable(item) for item in value]
    return value


def turn_from_completion(body: bytes) -> Turn:
    """The turn a completion's body stands for, by way of the Codex events it amounts to."""
    completion = _completion(body)
    turn_id = completion.get("id")
    choice = completion["choices"][0]
    message = _field(choice, "message", Mapping, "the first choice")
    content = _said(_field(message, "content", str, "the message", optional=True))
    refusal = _said(_field(message, "refusal", str, "the message", optional=True))
    calls = _field(message, "tool_calls", list, "the message", optional=True) or []
    events: list[dict[str, Any]] = [{"type": "turn.started"}]
    if isinstance(turn_id, str) and turn_id:
        events[0]["turn_id"] = turn_id
    seen: set[str] = set()
    events.extend(_call_event(call, index, seen) for index, call in enumerate(calls))
    completed: dict[str, Any] = {"type": "turn.completed", "usage": _usage(completion)}
    if calls:
        if content:
            item = {"type": "agent_message", "text": content}
            events.append({"type": "item.completed", "item": item})
        completed["status"] = "pending"
    elif content or refusal:
        completed["final_response"] = content or refusal
    else:
        reason = choice.get("finish_reason")
        raise ValueError(
            f"the completion has no content and no tool calls (finish_reason {reason!r})"
            + (": it ran out of tokens" if reason == "length" else "")
        )
    events.append(completed)
    return turn_from_events(events)


def _said(text: str | None) -> str | None:
    """``text`` unless it says nothing (a server may send whitespace for no content)."""
    return text if text and not text.isspace() else None


def _completion(body: bytes) -> dict[str, Any]:
    """The completion object in ``body``, with at least one choice."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past what Python parses
        text = body[:60].decode("utf-8", "replace")
        raise ValueError(
            f"the server's answer is not JSON ({' '.join(text.split())!r}...): is the base "
            "URL the API root, such as http://localhost:11434/v1?"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"the server's answer is {_kind(data)}, not a chat completion")
    error = data.get("error")
    if "choices" not in data and error is not None:  # an error sent with status 200
        said = error.get("message") if isinstance(error, Mapping) else error
        raise ValueError(f"the server answered an error: {said}")
    choices = _field(data, "choices", list, "the completion")
    if not choices:
        raise ValueError("the completion has no choices")
    if not isinstance(choices[0], dict):
        raise ValueError(f"the first choice is {_kind(choices[0])}, not an object")
    return data


def _call_event(call: object, index: int, seen: set[str]) -> dict[str, Any]:
    """A ``tool.call.required`` event for the ``index``-th tool call of a message.

    A call without an id (or with one already used in the message) gets a new one, which
    the conversation then carries; absent or null arguments are no arguments.
    """
    where = f"tool call {index}"
    if not isinstance(call, dict):
        raise ValueError(f"{where} is {_kind(call)}, not an object")
    kind = call.get("type", "function")
    if kind != "function":
        raise ValueError(f"{where} has type {kind!r}; only 'function' calls are supported")
    function = _field(call, "function", Mapping, where)
    name = _field(function, "name", str, f"{where}'s function")
    if not name:
        raise ValueError(f"{where} names no function")
    arguments = function.get("arguments")
    if arguments is None:
        arguments = {}
    elif not isinstance(arguments, str | Mapping):
        arguments = json.dumps(arguments)  # not an object: the tool's schema refuses it
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id or call_id in seen:
        call_id = new_id("call")
    seen.add(call_id)
    return {"type": "tool.call.required", "call_id": call_id, "tool_name": name,
            "arguments": arguments}  # fmt: skip


def _field(
    container: Mapping[str, Any], key: str, kind: type, where: str, *, optional: bool = False
) -> Any:
    value = container.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        expected = "an array" if kind is list else "a string" if kind is str else "an object"
        raise ValueError(f"{where} has {key!r} {_kind(value)}, not {expected}")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number")


def _usage(completion: Mapping[str, Any]) -> Usage:
    """Token counts as Codex names them; what a server leaves out or garbles is left out."""
    usage = completion.get("usage")
    if not isinstance(usage, Mapping):
        return {}
    details = usage.get("prompt_tokens_details")
    counts = {
        "input_tokens": usage.get("prompt_tokens"),
        "output_tokens": usage.get("completion_tokens"),
        "cached_input_tokens": details.get("cached_tokens")
        if isinstance(details, Mapping)
        else None,
    }
    return {
        name: count
        for name, count in counts.items()
        if isinstance(count, int) and not isinstance(count, bool) and count >= 0
    }
