"""The Codex event format a turn is written in, and how a turn is read from it.

One turn is a list of event objects, each with a ``type``::

    {"type": "thread.started", "thread_id": "thread_1"}
    {"type": "turn.started", "turn_id": "turn_1"}
    {"type": "item.completed", "item": {"type": "agent_message", "text": "Adding."}}
    {"type": "tool.call.required", "call_id": "c1", "tool_name": "add", "arguments": {"a": 1}}
    {"type": "turn.continuation", "continuation_token": "..."}
    {"type": "turn.completed", "usage": {"input_tokens": 12, "output_tokens": 3},
     "final_response": "3"}

``turn.completed`` carries ``final_response`` (a string, or an item with ``text``) on the
last turn and ``"status": "pending"`` on the others; a ``turn.continuation`` also means the
turn is not the last. ``arguments`` is an object or a JSON string. An ``agent_message``
item is what the model said alongside its calls (:attr:`Turn.text`). Other event types
are kept with the turn's events and otherwise ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from codex_tools.autorun._model import ToolCall, Turn, Usage

__all__ = ["check_event", "turn_from_events"]


def _string(event: Mapping[str, Any], key: str, where: str, *, required: bool) -> None:
    value = event.get(key)
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        kind = event["type"]
        raise ValueError(f"{where}: {kind} needs a non-empty string {key!r}, got {value!r}")


def check_event(event: object, where: str) -> dict[str, Any]:
    """``event`` as a dict if it is a well-formed event; else ValueError naming ``where``."""
    if not isinstance(event, Mapping):
        raise ValueError(f"{where}: an event must be a JSON object, got {type(event).__name__}")
    kind = event.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{where}: an event needs a string 'type'")
    if kind == "thread.started":
        _string(event, "thread_id", where, required=True)
    elif kind == "turn.started":
        _string(event, "turn_id", where, required=False)
    elif kind == "tool.call.required":
        _string(event, "call_id", where, required=True)
        _string(event, "tool_name", where, required=True)
        arguments = event.get("arguments", {})
        if not isinstance(arguments, Mapping | str):
            raise ValueError(
                f"{where}: tool.call.required arguments must be an object or a JSON string"
            )
    elif kind == "turn.completed":
        usage = event.get("usage", {})
        if not isinstance(usage, Mapping) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in usage.values()
        ):
            raise ValueError(f"{where}: turn.completed usage must map names to integers")
        final = event.get("final_response")
        if final is not None and not isinstance(final, str) and not _text_of(final):
            raise ValueError(
                f"{where}: turn.completed final_response must be a string or an item with 'text'"
            )
    return dict(event)


def _text_of(item: object) -> str | None:
    if isinstance(item, Mapping) and isinstance(item.get("text"), str):
        text: str = item["text"]
        return text
    return None


def turn_from_events(events: Iterable[Mapping[str, Any]]) -> Turn:
    """Read a turn from events already passed through :func:`check_event`."""
    kept = tuple(dict(event) for event in events)
    calls: list[ToolCall] = []
    usage: Usage = {}
    final: str | None = None
    said: list[str] = []
    pending = False
    turn_id = thread_id = None
    for event in kept:
        kind = event["type"]
        if kind == "thread.started":
            thread_id = event["thread_id"]
        elif kind == "turn.started":
            turn_id = event.get("turn_id") or turn_id
        elif kind == "tool.call.required":
            arguments = event.get("arguments", {})
            calls.append(ToolCall(event["tool_name"], arguments, event["call_id"]))
        elif kind == "item.completed":
            item = event.get("item")
            if isinstance(item, Mapping) and item.get("type") == "agent_message":
                said.extend(filter(None, [_text_of(item)]))
        elif kind == "turn.continuation":
            pending = True
        elif kind == "turn.completed":
            for name, count in event.get("usage", {}).items():
                usage[name] = usage.get(name, 0) + count
            pending = pending or event.get("status") == "pending"
            raw = event.get("final_response")
            final = raw if isinstance(raw, str) else _text_of(raw)
    return Turn(
        tool_calls=tuple(calls),
        final_response=None if pending else final,
        usage=usage,
        turn_id=turn_id,
        thread_id=thread_id,
        events=kept,
        text="\n".join(said) or None,
    )
