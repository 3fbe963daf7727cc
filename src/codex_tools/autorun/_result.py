"""What a run returns, and the error that carries it when the model never concludes."""

from __future__ import annotations

import dataclasses
from typing import Any

from codex_tools.autorun._model import ToolFailure, ToolOutput, Usage

__all__ = ["AutoRunResult", "MaxAttemptsReached"]


@dataclasses.dataclass(slots=True)
class AutoRunResult:
    """The outcome of a run: the final response (``None`` in a partial result), the
    number of turns taken, every tool output and failure in the order the model asked,
    the summed token usage, the thread id the calls ran under and the model's raw events."""

    final_response: str | None
    attempts: int
    tool_outputs: list[ToolOutput]
    tool_failures: list[ToolFailure]
    usage: Usage
    thread_id: str
    events: list[dict[str, Any]]


def plural(count: int, noun: str) -> str:
    """``1 turn``, ``2 turns``: what a person would write."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class MaxAttemptsReached(RuntimeError):
    """No final response came within ``max_attempts`` turns.

    A ``RuntimeError``, not a ``ToolError``: no tool is at fault, the run as a whole ran out
    of turns. ``result`` holds everything done so far.
    """

    def __init__(self, result: AutoRunResult) -> None:
        super().__init__(f"no final response within {plural(result.attempts, 'turn')}")
        self.result = result
