"""What a model and the loop exchange: the conversation in, a turn out, tool results back."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from codex_tools import Tool

__all__ = [
    "Conversation",
    "Model",
    "ToolCall",
    "ToolFailure",
    "ToolOutput",
    "ToolResult",
    "Turn",
    "TurnRecord",
    "Usage",
]

#: Token counts of a turn or a run, by name (``input_tokens``, ``output_tokens``, ...).
Usage = dict[str, int]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclasses.dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asks for; ``arguments`` is a mapping or a JSON string, as
    models send either and the registry validates both."""

    name: str
    arguments: Mapping[str, Any] | str = dataclasses.field(default_factory=dict)
    call_id: str = dataclasses.field(default_factory=lambda: new_id("call"))

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON text a chat protocol carries."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments))


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """One answer of the model: tool calls to run and/or the final response.

    A turn without a final response hands control back to the loop, which runs the calls
    and asks again. ``events`` keeps what the model emitted, in the Codex event format.
    """

    tool_calls: tuple[ToolCall, ...] = ()
    final_response: str | None = None
    usage: Usage = dataclasses.field(default_factory=dict)
    turn_id: str | None = None
    thread_id: str | None = None
    events: tuple[dict[str, Any], ...] = ()
    #: What the model said alongside its tool calls: a chat model is shown it again.
    text: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ToolOutput:
    """A tool call that succeeded, with what the tool returned, the turn it ran in and its
    attempt (1 plus the tool's failed calls since its last success in the run)."""

    call_id: str
    tool: str
    arguments: Mapping[str, Any] | str
    output: Any
    turn_id: str
    turn: int
    attempt: int

    @property
    def content(self) -> str:
        """The output as text for the model: the string a tool returned, else JSON, else
        (tuple keys, cycles, ...) the output's ``str``: never an error."""
        if isinstance(self.output, str):
            return self.output
        try:
            return json.dumps(self.output, default=_jsonable)
        except (TypeError, ValueError, RecursionError):
            return safe_str(self.output)


@dataclasses.dataclass(frozen=True, slots=True)
class ToolFailure:
    """A tool call that failed: the model is told the error type and a bounded message,
    so it can fix its arguments, pick another tool or try again."""

    call_id: str
    tool: str
    arguments: Mapping[str, Any] | str
    error_type: str
    message: str
    turn_id: str
    turn: int
    attempt: int

    @property
    def content(self) -> str:
        """The failure as JSON text for the model."""
        return json.dumps({"error": {"type": self.error_type, "message": self.message}})


ToolResult = ToolOutput | ToolFailure


def _jsonable(value: object) -> object:
    """What JSON has no type for: sets as arrays, bytes as text, anything else as str."""
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "backslashreplace")
    return safe_str(value)


def safe_str(value: object, convert: Callable[[object], str] = str) -> str:
    """``convert(value)``, or a placeholder if the value's ``__str__``/``__repr__`` is
    broken: a tool's odd output must not end a run or hide a call."""
    try:
        return convert(value)
    except Exception:  # noqa: BLE001
        return f"<unprintable {type(value).__name__}>"


@dataclasses.dataclass(frozen=True, slots=True)
class TurnRecord:
    """A past turn and the results of its tool calls, in the order the model asked."""

    turn: Turn
    turn_id: str
    results: tuple[ToolResult, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Conversation:
    """Everything a model needs to answer: the input, the number of the turn asked for
    (from 1), the tools it may call, the turns so far with their results and the system
    prompt, if any. A fresh, immutable one is built for every turn."""

    input: str
    turn: int
    thread_id: str | None
    tools: tuple[Tool, ...]
    turns: tuple[TurnRecord, ...] = ()
    instructions: str | None = None


@runtime_checkable
class Model(Protocol):
    """Anything that, given the conversation so far, returns the model's next turn."""

    async def next_turn(self, conversation: Conversation) -> Turn: ...
