"""``codex-tools demo``: an offline agent session whose story the output tells."""

from __future__ import annotations

import pytest

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
