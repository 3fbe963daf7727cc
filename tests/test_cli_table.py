"""The metrics table and call lines that `metrics`, `run` and `demo` print: any name and any
text shown literally, in any width from 40 columns."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from codex_tools import ToolError, ToolRegistry, telemetry, tool
from codex_tools._cli import main
from codex_tools._cli._calls import call_line
from codex_tools._cli._table import metrics_table

HOSTILE_NAMES = ["fetch[/api]", "list[bold]", "[red]x[/red]", "a\\", "caf\udce9", "tab\there"]


def render(renderable: Any, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue().splitlines()


def _real_entry() -> dict[str, Any]:
    registry = ToolRegistry()

    @registry.register
    @tool
    def flaky(fail: bool) -> str:
        if fail:
            raise TimeoutError("slow")
        return "ok"

    registry.invoke("flaky", {"fail": False})
    with contextlib.suppress(ToolError):
        registry.invoke("flaky", {"fail": True})
    return registry.metrics()["flaky"]


ENTRY = _real_entry()


def snapshot_of(names: list[str], error: str = "TimeoutError") -> dict[str, dict[str, Any]]:
    """A snapshot as a file may hold it: each named tool succeeded once and failed once."""
    return {name: {**ENTRY, "last_error": {"type": error, "message": "slow"}} for name in names}


def failure_event(name: str, error: BaseException) -> tuple[dict[str, Any], dict[str, Any]]:
    """The measurements and metadata of a real failure event, for ``name`` and ``error``."""
    registry = ToolRegistry()
    registry.register(lambda: None, name="any", description="fails")
    with telemetry.capture(telemetry.TOOL_EVENTS[0]) as starts:
        registry.invoke("any")
    (start,) = starts
    measurements = {**start.measurements, "duration_ms": 1.5}
    return measurements, {**start.metadata, "tool": name, "result": "error", "error": error}


class TestColumns:
    NAMES = ("flights", "fx_rate", "a_tool_with_a_rather_long_name")

    @pytest.mark.parametrize("width", [40, 50, 60, 70, 80, 100, 120])
    def test_every_line_fits_and_every_name_is_whole(self, width: int) -> None:
        lines = render(metrics_table(snapshot_of(list(self.NAMES)), width), width)
        assert max(cell_len(line) for line in lines) <= width
        for name in self.NAMES:
            assert sum(name in line for line in lines) == 1

    def test_columns_drop_in_the_documented_order(self) -> None:
        snapshot = snapshot_of(list(self.NAMES))
        order = ["last error", "p99", "p50", "rate", "retry", "p95"]
        seen: list[list[str]] = []
        for width in range(120, 39, -1):
            header = render(metrics_table(snapshot, width), width)[1]
            kept = [column for column in order if f" {column}" in f" {header}"]
            if not seen or kept != seen[-1]:
                seen.append(kept)
        assert seen == [order[n:] for n in range(len(order) + 1)]
        assert "ok" in header
        assert "fail" in header

    def test_a_name_too_long_for_40_columns_ends_in_an_ellipsis(self) -> None:
        name = "n" * 60
        lines = render(metrics_table(snapshot_of([name]), 40), 40)
        (row,) = [line for line in lines if line.startswith("nnn")]
        assert row.split()[0].endswith("…")
        assert max(cell_len(line) for line in lines) <= 40

    def test_an_empty_snapshot_says_so(self) -> None:
        assert render(metrics_table({}, 80), 80) == ["no tool calls yet"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_names_and_errors_that_look_like_markup_are_shown_literally(name: str) -> None:
    lines = render(metrics_table(snapshot_of([name], error="Error[/bold]"), 100), 100)
    shown = name.replace("\udce9", "\\udce9").replace("\t", " ")
    (row,) = [line for line in lines if line.startswith(shown)]
    assert "Error[/bold]" in row


def test_the_metrics_command_prints_a_snapshot_of_hostile_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(snapshot_of(HOSTILE_NAMES)), encoding="utf-8")
    assert main(["metrics", str(path)]) == 0
    out = capsys.readouterr().out
    assert "fetch[/api]" in out
    assert "list[bold]" in out
    assert "caf\\udce9" in out


def test_an_empty_snapshot_file_says_no_tool_calls_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.json"
    path.write_text("{}")
    assert main(["metrics", str(path)]) == 0
    assert capsys.readouterr().out == "no tool calls yet\n"


class TestCallLines:
    def line(self, width: int, **meta: Any) -> str:
        base = {"tool": "fetch[/api]", "attempt": 2, "retry": True, "result": "ok"}
        text = call_line({"duration_ms": 12.5}, {**base, **meta}, width)
        return "\n".join(render(text, width))

    @pytest.mark.parametrize("width", [40, 60, 80])
    def test_a_line_fits_its_width_and_shows_the_name_whole(self, width: int) -> None:
        line = self.line(width, output="x" * 500)
        assert "\n" not in line
        assert cell_len(line) <= width
        assert line.startswith("✓ fetch[/api]")
        assert ("attempt 2" if width >= 60 else "#2") in line

    def test_an_error_with_markup_control_characters_and_a_surrogate_is_literal(self) -> None:
        error = ToolError("[bold]boom[/] \x1b[2J caf\udce9\nsecond line")
        line = self.line(120, result="error", error=error)
        assert line.startswith("✗ fetch[/api]")
        assert "ToolError: [bold]boom[/] \\x1b[2J caf\\udce9 second line" in line


@settings(max_examples=60, deadline=None)
@given(
    names=st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=4, unique=True),
    error=st.text(max_size=300),
    width=st.integers(min_value=40, max_value=160),
)
@example(names=["x" * 1_000_000], error="[/]" * 300_000, width=40)
@example(names=["\udcff" * 1000, "[bold]"], error="\x00\x1b\u202e" * 1000, width=80)
def test_any_names_and_any_error_text_render_within_the_width(
    names: list[str], error: str, width: int
) -> None:
    snapshot = snapshot_of(names, error=error)
    lines = render(metrics_table(snapshot, width), width)
    assert max(cell_len(line) for line in lines) <= width
    for name in names:
        measurements, meta = failure_event(name, ValueError(error))
        lines = render(call_line(measurements, meta, width), width)
        assert max(cell_len(line) for line in lines) <= width
