"""The MCP benchmarks run end to end and their self-checks pass (tiny sizes, no timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_mcp_benchmark_run_answers_and_counts_every_pipelined_call() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.mcp_bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "initialize answered:" in done.stdout
    assert "proxy adds at p50:" in done.stdout
    assert "the mcp SDK alone" in done.stdout
    assert "each answered once: True; counted: 50" in done.stdout
