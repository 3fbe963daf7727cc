"""``codex-tools demo``: an offline agent session whose story the output tells."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

from codex_tools import telemetry
from codex_tools._cli import main
from codex_tools._cli.demo import demo_model, demo_registry
from codex_tools.autorun import run_auto


def test_the_demo_session_recovers_retries_and_times_out() -> None:
    registry = demo_registry()
    result = run_auto(demo_model(), "plan", registry=registry)
    assert result.final_response is not None
    assert "USD 528.12" in result.final_response
    stats = registry.metrics()
    counts = {name: (row["success"], row["failure"]) for name, row in stats.items()}
    assert counts == {
        "flights": (1, 1),  # failed in turn 1, retried by the model in turn 2
        "fx_rate": (1, 1),  # retried by its own policy within turn 1
        "reviews": (0, 1),  # timed out
        "hotel": (1, 0),
        "convert": (1, 0),
    }
    assert stats["reviews"]["last_error"]["type"] == "TimeoutError"
    assert [f.error_type for f in result.tool_failures] == [
        "ToolExecutionError",
        "ToolTimeoutError",
        "ToolNotFoundError",
    ]


def test_the_demo_prints_each_call_and_the_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    lines = capsys.readouterr().out.splitlines()

    def line(*parts: str) -> str:
        (found,) = [each for each in lines if all(part in each for part in parts)]
        return found

    assert "ConnectionError" in line("✗ flights", "attempt 1")
    assert "retry" in line("✓ flights", "attempt 2")
    assert "RuntimeError: 429" in line("✗ fx_rate", "attempt 1")
    assert "retry" in line("✓ fx_rate", "attempt 2")
    assert "TimeoutError" in line("✗ reviews")
    assert line("✗ weather", "no such tool")
    assert line("Tool metrics")
    assert line("3 turns, 4 tool outputs, 3 tool failures")


def test_only_calls_after_a_failure_are_retries() -> None:
    registry = demo_registry()
    with telemetry.capture(telemetry.TOOL_EVENTS[0]) as starts:
        run_auto(demo_model(), "plan", registry=registry)
    tags = [(e.metadata["tool"], e.metadata["attempt"], e.metadata["retry"]) for e in starts]
    assert sorted(tags) == [
        ("convert", 1, False),
        ("flights", 1, False),
        ("flights", 2, True),  # the model retries it after its failure in turn 1
        ("fx_rate", 1, False),
        ("fx_rate", 2, True),  # its own policy retries it within turn 1
        ("hotel", 1, False),  # first called in turn 2: not a retry
        ("reviews", 1, False),
    ]
    retries = {name: row["retries"] for name, row in registry.metrics().items()}
    assert retries == {"flights": 1, "fx_rate": 1, "reviews": 0, "hotel": 0, "convert": 0}


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_make_demo_reads_well_at_any_terminal_width(columns: int) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "codex-tools"), "demo"],
        capture_output=True, text=True, timeout=60, check=True,
        env={**os.environ, "COLUMNS": str(columns)},
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert max(cell_len(line) for line in lines) <= columns
    assert done.stderr == ""
    calls = [line.split()[:4] for line in lines if line[:2] in ("✓ ", "✗ ")]
    assert ["✓", "hotel", "attempt", "1"] in calls
    assert ["✓", "flights", "attempt", "2"] in calls
    retried = [line for line in lines if " retry " in f"{line} " and line[:2] == "✓ "]
    assert [line.split()[1] for line in retried] == ["fx_rate", "flights"]
    table = lines[next(n for n, line in enumerate(lines) if "Tool metrics" in line) + 3 :]
    assert {row.split()[0]: row.split()[3] for row in table} == {
        "convert": "0", "flights": "1", "fx_rate": "1", "hotel": "0", "reviews": "0",
    }  # fmt: skip
