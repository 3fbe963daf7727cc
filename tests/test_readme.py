"""The README as a newcomer meets it: its set-up at the top, every Python block executed
(by the Sybil runner in conftest.py), and a Makefile that installs no more than each
command needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)


def fence_languages(text: str) -> list[str]:
    """The info string of every opening fence, in order (closing fences are skipped)."""
    return FENCE.findall(text)[::2]


def test_every_python_block_is_one_executed_example() -> None:
    """A mistyped fence (```py, ```Python) would show code that no test runs."""
    text = README.read_text(encoding="utf-8")
    languages = fence_languages(text)
    python_like = [lang for lang in languages if lang.lower().startswith("py")]
    assert set(python_like) == {"python"}
    skips = text.count("<!-- skip: next -->")
    examples = list(Sybil([PythonCodeBlockParser(), SkipParser()]).parse(README).examples())
    assert len(examples) == len(python_like) + skips  # each block, and each skip directive
    assert len(python_like) >= 10


def test_every_skip_marks_the_python_block_right_after_it() -> None:
    text = README.read_text(encoding="utf-8")
    skips = [m.end() for m in re.finditer(r"^<!-- skip: next -->\n", text, re.MULTILINE)]
    assert skips, "the blocks that need an endpoint or block on stdin are marked"
    assert all(text.startswith("```python\n", end) for end in skips)


def test_the_readme_opens_with_the_whole_set_up_and_the_quick_subset() -> None:
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [
        ["make", "demo"],
        ["make", "test"],
    ]
    assert text.index("```sh") < text.index("\n## ")  # before any section
    assert '.venv/bin/pytest -m "not slow"' in text


def make_dry_run(tmp_path: Path, *targets: str) -> str:
    """What `make` would run in a fresh clone (no .venv), without running it."""
    for name in ("Makefile", "pyproject.toml"):
        if not (tmp_path / name).exists():
            shutil.copy(ROOT / name, tmp_path / name)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    done = subprocess.run(
        ["make", "-n", *targets],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
class TestMakefile:
    def test_demo_installs_the_package_without_the_dev_extra(self, tmp_path: Path) -> None:
        commands = make_dry_run(tmp_path, "demo")
        assert "pip install -q uv" in commands
        assert "-e ." in commands
        assert "[dev]" not in commands
        assert commands.rstrip().endswith(".venv/bin/codex-tools demo")

    def test_test_adds_the_dev_extra_and_runs_pytest_on_every_core(self, tmp_path: Path) -> None:
        commands = make_dry_run(tmp_path, "test")
        assert "-e '.[dev]'" in commands
        assert ".venv/bin/mypy --strict src" in commands
        assert commands.rstrip().endswith(".venv/bin/pytest -q -n auto --dist loadscope")

    def test_demo_then_test_reuses_the_venv(self, tmp_path: Path) -> None:
        make_dry_run(tmp_path, "demo")
        (tmp_path / ".venv" / "bin").mkdir(parents=True)
        (tmp_path / ".venv" / "bin" / "python").touch()
        (tmp_path / ".venv" / ".installed-core").touch()
        commands = make_dry_run(tmp_path, "demo", "test")
        assert "-m venv" not in commands
        installs = [line for line in commands.splitlines() if "pip install" in line]
        assert len(installs) == 1
        assert "[dev]" in installs[0]


SANDBOXED_README = """
```python
import logging, os, threading
import codex_tools
from codex_tools import telemetry

codex_tools.register(lambda: 1, name="left_behind")
telemetry.attach("readme-handler", ("codex", "tool", "start"), print)
logging.getLogger().addHandler(logging.StreamHandler())  # basicConfig, under pytest's
logging.getLogger().setLevel(logging.DEBUG)               # own handlers
with open("scratch.txt", "w") as file:
    file.write("written where the README runs")
```
"""

CHECK_AFTER = """
import logging
from pathlib import Path

import codex_tools
from codex_tools import telemetry


def test_nothing_of_the_readme_is_left() -> None:
    assert [tool.name for tool in codex_tools.tools()] == []
    assert telemetry.list_handlers() == []
    root = logging.getLogger()
    assert not [h for h in root.handlers if type(h) is logging.StreamHandler]
    assert root.level == logging.WARNING
    assert not (Path.cwd() / "scratch.txt").exists()
"""


def run_pytest_on(tmp_path: Path, readme: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run the README runner of this repository on another README, in a fresh process."""
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "README.md").write_text(textwrap.dedent(readme), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "README.md", *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


class TestSandbox:
    def test_the_readme_leaves_no_registry_handler_logging_or_file_behind(
        self, tmp_path: Path
    ) -> None:
        (tmp_path / "test_after.py").write_text(CHECK_AFTER, encoding="utf-8")
        done = run_pytest_on(tmp_path, SANDBOXED_README, "test_after.py")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 passed" in done.stdout

    @pytest.mark.slow
    def test_a_block_that_leaves_a_thread_running_fails(self, tmp_path: Path) -> None:
        readme = """
        ```python
        import threading
        stop = threading.Event()
        threading.Thread(target=stop.wait, name="forgotten-server", daemon=True).start()
        ```
        """
        done = run_pytest_on(tmp_path, readme)
        assert done.returncode == 1
        assert "README blocks left threads running: ['forgotten-server']" in done.stdout

    @pytest.mark.slow
    def test_make_tests_xdist_options_keep_the_readme_in_one_process_and_order(
        self, tmp_path: Path
    ) -> None:
        """Blocks continue each other: spread over workers, the later ones would fail."""
        pytest_command = make_dry_run(tmp_path, "test").splitlines()[-1].split()
        assert pytest_command[0].endswith("pytest")
        blocks = ["```python\nstep = 0\n```\n"] + [
            f"```python\nassert step == {n}\nstep += 1\n```\n" for n in range(12)
        ]
        done = run_pytest_on(tmp_path, "\n".join(blocks), *pytest_command[1:])
        assert done.returncode == 0, done.stdout + done.stderr
        assert "13 passed" in done.stdout
