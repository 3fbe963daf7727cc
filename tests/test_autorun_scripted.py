"""ScriptedModel: turns replayed from Codex events, in lists or JSONL files."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from codex_tools import ToolRegistry, tool
from codex_tools.autorun import ScriptedModel, run_auto


def write_turns(folder: Path, *turns: list[Any]) -> list[Path]:
    paths = []
    for number, events in enumerate(turns, 1):
        path = folder / f"turn{number}.jsonl"
        path.write_text(
            "\n".join(e if isinstance(e, str) else json.dumps(e) for e in events) + "\n",
            encoding="utf-8",
        )
        paths.append(path)
    return paths


def adder() -> ToolRegistry:
    registry = ToolRegistry()

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    registry.register(add)
    return registry


def test_a_script_in_jsonl_files_runs_one_file_a_turn(tmp_path: Path) -> None:
    paths = write_turns(
        tmp_path,
        [
            {"type": "thread.started", "thread_id": "thread_files"},
            {"type": "turn.started", "turn_id": "t1"},
            {"type": "tool.call.required", "call_id": "c1", "tool_name": "add",
             "arguments": '{"a": 2, "b": 3}'},
            {"type": "turn.continuation", "continuation_token": "k1"},
            {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 2}},
        ],
        [
            {"type": "turn.started", "turn_id": "t2"},
            "",
            {"type": "item.completed", "item": {"type": "reasoning", "text": "sum is 5"}},
            {"type": "turn.completed", "usage": {"input_tokens": 14, "output_tokens": 4},
             "final_response": {"type": "agent_message", "text": "2 + 3 = 5"}},
        ],
    )  # fmt: skip
    model = ScriptedModel.from_files(paths)
    assert len(model) == 2
    result = run_auto(model, "add 2 and 3", registry=adder())
    assert result.final_response == "2 + 3 = 5"
    assert result.thread_id == "thread_files"
    assert [(o.turn_id, o.output) for o in result.tool_outputs] == [("t1", 5)]
    assert result.usage == {"input_tokens": 24, "output_tokens": 6}
    kinds = [event["type"] for event in result.events]
    assert kinds == [
        "thread.started",
        "turn.started",
        "tool.call.required",
        "turn.continuation",
        "turn.completed",
        "turn.started",
        "item.completed",  # unknown to the loop: kept, otherwise ignored
        "turn.completed",
    ]


def test_a_continuation_means_no_final_response_yet() -> None:
    model = ScriptedModel(
        [
            [{"type": "turn.continuation"}, {"type": "turn.completed", "final_response": "early"}],
            [{"type": "turn.completed", "final_response": "late"}],
        ]
    )
    result = run_auto(model, "wait", registry=ToolRegistry())
    assert (result.final_response, result.attempts) == ("late", 2)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"type": "turn.started"', "invalid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"call_id": "c1"}', "needs a string 'type'"),
        ('{"type": "tool.call.required", "call_id": "c1"}', "needs a non-empty string 'tool_name'"),
        ('{"type": "tool.call.required", "call_id": "c1", "tool_name": "add", "arguments": [1]}',
         "arguments must be an object or a JSON string"),
        ('{"type": "thread.started"}', "thread_id"),
        ('{"type": "turn.completed", "usage": {"input_tokens": "many"}}', "usage"),
        ('{"type": "turn.completed", "final_response": {"content": "x"}}', "final_response"),
    ],
)  # fmt: skip
def test_a_malformed_line_names_its_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    good = {"type": "turn.started"}
    paths = write_turns(tmp_path, [good], [good, "", line])
    with pytest.raises(ValueError, match=re.escape("turn2.jsonl:3: ")) as caught:
        ScriptedModel.from_files(paths)
    assert problem in str(caught.value)
    assert str(paths[1]) in str(caught.value)


def test_a_malformed_event_in_a_list_names_its_turn_and_event() -> None:
    with pytest.raises(ValueError, match=re.escape("turn 1, event 2: tool.call.required needs")):
        ScriptedModel([[{"type": "turn.started"}, {"type": "tool.call.required"}]])


def test_a_script_that_runs_out_of_turns_says_so() -> None:
    model = ScriptedModel([[{"type": "turn.completed", "status": "pending"}]])
    with pytest.raises(LookupError, match="has 1 turns and was asked for turn 2"):
        run_auto(model, "more", registry=ToolRegistry())
