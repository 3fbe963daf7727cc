"""The README's ```python blocks run as tests (Sybil), in order, in one namespace.

A block that cannot run here (it needs a real OpenAI-compatible endpoint, or serves
stdin until killed) is preceded by ``<!-- skip: next -->``. The document runs in a
sandbox: a fresh default registry, a scratch working directory, and afterwards the
telemetry handlers and logging it set up are removed, so it neither sees nor leaves
state for the other tests of its worker. A block that leaves a thread running (a
server never stopped) fails the document.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser

import codex_tools
from codex_tools import ToolRegistry, _runners, telemetry

_THREAD_GRACE_S = 5.0  # a worker thread of a finished call may still be returning


class _Sandbox:
    """What the README may change in this process, saved before it runs, put back after."""

    def setup(self, namespace: dict[str, Any]) -> None:
        self._registry = codex_tools._default
        codex_tools._default = ToolRegistry()
        self._handlers = {info.id for info in telemetry.list_handlers()}
        self._loggers = {
            name: (logger.level, list(logger.handlers))
            for name, logger in self._touched_loggers().items()
        }
        self._threads = set(threading.enumerate())
        self._cwd = Path.cwd()
        self._scratch = tempfile.mkdtemp(prefix="readme-")
        os.chdir(self._scratch)

    def teardown(self, namespace: dict[str, Any]) -> None:
        _runners.retire_idle()  # idle workers of the pool are not threads left running
        left = self._threads_left()
        for info in telemetry.list_handlers():
            if info.id not in self._handlers:
                telemetry.detach(info.id)
        for name, logger in self._touched_loggers().items():
            level, handlers = self._loggers[name]
            for handler in set(logger.handlers) - set(handlers):
                if type(handler).__module__.startswith("_pytest."):
                    continue  # pytest's own capture, one per test phase: pytest removes it
                logger.removeHandler(handler)
                handler.close()
            logger.setLevel(level)
        os.chdir(self._cwd)
        shutil.rmtree(self._scratch, ignore_errors=True)
        codex_tools._default = self._registry
        namespace.clear()
        if left:
            raise AssertionError(f"README blocks left threads running: {sorted(left)}")

    @staticmethod
    def _touched_loggers() -> dict[str, logging.Logger]:
        return {name: logging.getLogger(name or None) for name in ("", "codex_tools")}

    def _threads_left(self) -> list[str]:
        new = [thread for thread in threading.enumerate() if thread not in self._threads]
        for thread in new:
            thread.join(_THREAD_GRACE_S / len(new))
        return [thread.name for thread in new if thread.is_alive()]


_sandbox = _Sandbox()
# Under xdist, `--dist loadscope` (see the Makefile) keeps the whole README on one worker.
pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    filenames=["README.md"],
    setup=_sandbox.setup,
    teardown=_sandbox.teardown,
).pytest()
