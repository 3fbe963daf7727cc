"""A model behind any server that speaks OpenAI's Chat Completions tool calling
(OpenAI, Ollama, vLLM, llama.cpp, ...), through the official ``openai`` package."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from codex_tools.autorun._events import turn_from_events
from codex_tools.autorun._model import Conversation, Turn, Usage

if TYPE_CHECKING:
    import openai
    from openai.types.chat import ChatCompletion

    from codex_tools import Tool

__all__ = ["OpenAIChatModel"]


def _import_openai() -> None:
    try:
        import openai  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "OpenAIChatModel needs the openai package: pip install 'codex-tools[openai]'"
        ) from error


class OpenAIChatModel:
    """Ask a Chat Completions model for each turn, with the registry's tools on offer.

    The whole conversation is sent every turn: the input as the user message, each earlier
    turn as an assistant message with its ``tool_calls``, and each result as a ``tool``
    message (a failure as ``{"error": {"type", "message"}}``). Usage is reported as
    ``input_tokens``, ``cached_input_tokens`` and ``output_tokens``, as Codex does.

    Give ``client`` (an ``openai.AsyncOpenAI``, or an ``openai.OpenAI`` that then runs in
    a worker thread) to control retries, timeouts and connection reuse; otherwise each turn
    opens and closes an ``AsyncOpenAI`` for ``base_url`` and ``api_key`` (which default to
    the ``OPENAI_*`` environment variables; a local server needs no key).
    """

    def __init__(
        self,
        model: str,
        client: openai.AsyncOpenAI | openai.OpenAI | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        _import_openai()
        if client is not None and (base_url is not None or api_key is not None):
            raise ValueError("pass either a client or base_url/api_key, not both")
        self.model = model
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
        return turn_from_completion(await self._complete(request))

    async def _complete(self, request: dict[str, Any]) -> ChatCompletion:
        import openai  # present: __init__ checked

        client = self._client
        if client is None:
            async with openai.AsyncOpenAI(base_url=self._base_url, api_key=self._api_key) as own:
                completion: ChatCompletion = await own.chat.completions.create(**request)
            return completion
        if isinstance(client, openai.AsyncOpenAI):
            completion = await client.chat.completions.create(**request)
            return completion
        sync_client = client

        def create() -> ChatCompletion:
            completion: ChatCompletion = sync_client.chat.completions.create(**request)
            return completion

        return await asyncio.to_thread(create)


def chat_tools(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    """The ``tools`` parameter: every tool not switched off, as a function."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in tools
        if tool.enabled is not False
    ]


def chat_messages(conversation: Conversation) -> list[dict[str, Any]]:
    """The conversation so far as Chat Completions messages."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": conversation.input}]
    for record in conversation.turns:
        calls = record.turn.tool_calls
        if not calls:
            continue
        messages.append(
            {
                "role": "assistant",
                "content": None,
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


def turn_from_completion(completion: ChatCompletion) -> Turn:
    """The turn a completion stands for, by way of the Codex events it amounts to."""
    if not completion.choices:
        raise ValueError(f"chat completion {completion.id!r} has no choices")
    message = completion.choices[0].message
    events: list[dict[str, Any]] = [{"type": "turn.started", "turn_id": completion.id}]
    events.extend(
        {
            "type": "tool.call.required",
            "turn_id": completion.id,
            "call_id": call.id,
            "tool_name": call.function.name,
            "arguments": call.function.arguments,
        }
        for call in message.tool_calls or ()
        if call.type == "function"
    )
    completed: dict[str, Any] = {"type": "turn.completed", "turn_id": completion.id}
    completed["usage"] = _usage(completion)
    if len(events) > 1:
        completed["status"] = "pending"
    else:
        completed["final_response"] = message.content or ""
    events.append(completed)
    return turn_from_events(events)


def _usage(completion: ChatCompletion) -> Usage:
    usage = completion.usage
    if usage is None:
        return {}
    counts = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
    details = usage.prompt_tokens_details
    if details is not None and details.cached_tokens is not None:
        counts["cached_input_tokens"] = details.cached_tokens
    return counts
