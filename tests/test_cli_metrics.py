"""`codex-tools metrics [FILE]`: a saved snapshot as a table or checked JSON."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from errno import ENOENT
from pathlib import Path
from typing import Any

import pytest

from codex_tools import ToolExecutionError, ToolRegistry, tool
from codex_tools._cli import main


@pytest.fixture
def snapshot() -> dict[str, dict[str, Any]]:
    """A real snapshot: `lookup` called five times, `fetch` three times with two failures."""
    registry = ToolRegistry()

    @tool
    def lookup(key: str) -> str:
        """Find a key."""
        return key

    @tool
    def fetch(url: str) -> str:
        """Fetch a URL, or fail on a bad one."""
        if url.startswith("bad"):
            raise ConnectionError(f"cannot reach {url}")
        return url

    registry.register(lookup)
    registry.register(fetch)
    for i in range(5):
        registry.invoke("lookup", {"key": str(i)})
    for url in ("ok", "bad1", "bad2"):
        with contextlib.suppress(ToolExecutionError):
            registry.invoke("fetch", {"url": url})
    return registry.metrics()


@pytest.fixture
def snapshot_file(tmp_path: Path, snapshot: dict[str, dict[str, Any]]) -> Path:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(snapshot))
    return path


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")  # rich folds long cells at its default 80


def rows(output: str, names: set[str]) -> list[str]:
    """The tool names in the order the table prints them."""
    first_words = (line.split()[0] for line in output.splitlines() if line.strip())
    return [word for word in first_words if word in names]


class TestTable:
    def test_every_tool_of_the_snapshot_has_a_row(
        self, snapshot_file: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["metrics", str(snapshot_file)]) == 0
        out = capsys.readouterr().out
        assert sorted(rows(out, {"lookup", "fetch"})) == ["fetch", "lookup"]
        assert "ConnectionError" in out

    def test_stdin_is_read_when_no_file_is_given(
        self,
        snapshot: dict[str, dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(snapshot)))
        assert main(["metrics"]) == 0
        assert sorted(rows(capsys.readouterr().out, set(snapshot))) == ["fetch", "lookup"]

    @pytest.mark.parametrize(
        ("sort", "first"), [("calls", "lookup"), ("failure", "fetch"), ("name", "fetch")]
    )
    def test_sort_puts_the_worst_or_busiest_tool_first(
        self, snapshot_file: Path, capsys: pytest.CaptureFixture[str], sort: str, first: str
    ) -> None:
        assert main(["metrics", str(snapshot_file), "--sort", sort]) == 0
        assert rows(capsys.readouterr().out, {"lookup", "fetch"})[0] == first

    def test_sort_by_p95_puts_the_slowest_tool_first(
        self,
        snapshot: dict[str, dict[str, Any]],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        # Set by hand: real latencies of two fast tools would order them by chance.
        snapshot["lookup"]["p95_latency_ms"] = 900.0
        snapshot["fetch"]["p95_latency_ms"] = 3.0
        path = tmp_path / "slow.json"
        path.write_text(json.dumps(snapshot))
        assert main(["metrics", str(path), "--sort", "p95"]) == 0
        assert rows(capsys.readouterr().out, set(snapshot)) == ["lookup", "fetch"]


class TestJson:
    def test_json_output_round_trips_the_snapshot(
        self,
        snapshot: dict[str, dict[str, Any]],
        snapshot_file: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert main(["metrics", str(snapshot_file), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == snapshot


class TestBadInput:
    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("{not json", "not JSON (Expecting property name enclosed in double quotes"),
            ("[1, 2]", "not a metrics snapshot: expected an object of tools, got an array"),
            ('{"t": 3}', "tool 't' is a number, not an object"),
            ('{"t": {"success": 1}}', "tool 't' has no 'failure'"),
        ],
    )
    def test_a_bad_file_is_one_line_and_exit_status_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
    ) -> None:
        path = tmp_path / "bad.json"
        path.write_text(content)
        assert main(["metrics", str(path)]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        [line] = captured.err.splitlines()
        assert line.startswith(f"codex-tools: error: {path}: ")
        assert message in line

    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            ("failure", -1, "'failure' is -1, not a count"),
            ("retries", True, "'retries' is True, not a count"),
            ("p95_latency_ms", "fast", "'p95_latency_ms' is 'fast', not a number"),
            ("last_error", "boom", "'last_error' is neither null nor an error"),
        ],
    )
    def test_a_wrong_value_is_named(
        self,
        snapshot: dict[str, dict[str, Any]],
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        key: str,
        value: object,
        message: str,
    ) -> None:
        snapshot["fetch"][key] = value
        path = tmp_path / "wrong.json"
        path.write_text(json.dumps(snapshot))
        assert main(["metrics", str(path)]) == 2
        assert message in capsys.readouterr().err

    def test_an_unreadable_file_is_named(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        missing = tmp_path / "missing.json"
        assert main(["metrics", str(missing)]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line == f"codex-tools: error: cannot read {str(missing)!r}: " + os.strerror(ENOENT)

    def test_a_terminal_on_stdin_is_not_waited_on(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        monkeypatch.setattr(sys, "stdin", Terminal())
        assert main(["metrics"]) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line == "codex-tools: error: no snapshot: give a FILE or pipe JSON into stdin"

    def test_bad_json_on_the_real_command_line_shows_no_traceback(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "codex_tools", "metrics"],
            input="{oops",
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            "codex-tools: error: stdin: not JSON "
            "(Expecting property name enclosed in double quotes at line 1 column 2)"
        ]
