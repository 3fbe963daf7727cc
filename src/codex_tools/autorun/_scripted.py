"""A model that replays turns written down in advance: for tests, demos and bug reports."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from codex_tools.autorun._events import check_event, turn_from_events
from codex_tools.autorun._model import Conversation, Turn

__all__ = ["ScriptedModel"]


class ScriptedModel:
    """Replay turns in the Codex event format, one list of events a turn.

    Turn ``n`` of a run gets the ``n``-th scripted turn whatever the tools returned, so
    the same model can be run again. Every conversation it was shown is kept in
    ``conversations``, for tests to check what a model would have seen.
    """

    def __init__(self, turns: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._turns = [
            turn_from_events(
                check_event(event, f"turn {t}, event {e}") for e, event in enumerate(events, 1)
            )
            for t, events in enumerate(turns, 1)
        ]
        self.conversations: list[Conversation] = []

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> ScriptedModel:
        """Read one JSONL file a turn, one event a line (blank lines are skipped)."""
        return cls([_read_jsonl(Path(path)) for path in paths])

    def __len__(self) -> int:
        return len(self._turns)

    async def next_turn(self, conversation: Conversation) -> Turn:
        self.conversations.append(conversation)
        if conversation.turn > len(self._turns):
            raise LookupError(
                f"ScriptedModel has {len(self._turns)} turns and was asked for turn "
                f"{conversation.turn}"
            )
        return self._turns[conversation.turn - 1]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    events = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                event = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: invalid JSON: {error.msg}") from None
            events.append(check_event(event, where))
    return events
