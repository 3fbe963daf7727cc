"""The benchmark suites run end to end and their self-checks pass (sizes tiny, no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` run from the repository's root, as `make bench` runs them."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_quick_benchmark_run_covers_every_scenario_and_checks_its_counts(tmp_path: Path) -> None:
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    done = python("-m", "benchmarks", "--quick", "--json", str(out), "--markdown", str(table))
    assert done.returncode == 0, done.stderr
    assert "codex-tools benchmarks" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert {row["scenario"].split()[0] for row in rows} >= {str(n) for n in range(1, 10)}
    assert all(row["check"] in ("ok", "n/a") for row in rows)
    measured = [row for row in rows if row["check"] == "ok"]
    assert all(row["value"] is not None and row["value"] > 0 for row in measured)
    assert table.read_text().count("\n| ") == len(rows) + 1  # the header, then one per row


def test_a_wrong_count_fails_the_run() -> None:
    """A fast wrong answer cannot pass: a failed self-check makes the exit status 1."""
    code = (
        "import sys; from benchmarks import __main__, _scale; "
        "_scale.calls = lambda registry, name: -1; "  # the thread scenario miscounts
        "sys.exit(__main__.main(['--quick', '--only', 'scale']))"  # the check is what counts
    )
    done = python("-c", code)
    assert done.returncode == 1
    assert "check failed: 1 threads: -1 counted" in done.stderr


def test_only_runs_the_scenarios_named_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = python("-m", "benchmarks", "--quick", "--only", "sync, pydantic-ai", "--json", str(out))
    assert done.returncode == 0, done.stderr
    scenarios = {row["scenario"].split()[0] for row in json.loads(out.read_text())["rows"]}
    assert scenarios == {"1", "2", "4", "pydantic-ai"}  # _sync has scenarios 1, 2 and 4
    refused = python("-m", "benchmarks", "--only", "sync,nonesuch")
    assert refused.returncode == 2
    assert "unknown scenario nonesuch" in refused.stderr


@pytest.mark.slow
def test_quick_mcp_benchmark_run_answers_and_counts_every_pipelined_call() -> None:
    done = python("-m", "benchmarks.mcp_bench", "--quick")
    assert done.returncode == 0, done.stderr
    assert "initialize answered:" in done.stdout
    assert "proxy adds at p50:" in done.stdout
    assert "the mcp SDK alone" in done.stdout
    assert "each answered once: True; counted: 50" in done.stdout
