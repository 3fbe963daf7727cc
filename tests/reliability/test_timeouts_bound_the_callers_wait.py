"""A timeout bounds the caller's wait, whatever the tool does: a sync tool stuck past its
deadline, or an async tool blocked in a thread it started, never delays the caller,
other tools, ``run_auto``'s return or the process's exit.

Stuck tools here block on an Event the test releases at teardown, so the suite never
leaves a thread blocked for good; where exit behaviour matters, a real process runs.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from codex_tools import Tool, ToolRegistry, ToolTimeoutError
from codex_tools._runners import MAX_ABANDONED_PER_TOOL, MAX_WORKERS
from codex_tools.autorun import ScriptedModel, run_auto


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Stuck tools wait on this; set at teardown, so their threads end."""
    event = threading.Event()
    yield event
    event.set()


def _returns_within(seconds: float, function: Callable[[], Any]) -> Any:
    """Run ``function`` in a thread; fail (not hang) if it has not returned in time."""
    box: list[Any] = []
    thread = threading.Thread(target=lambda: box.append(_outcome(function)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s"
    result, error = box[0]
    if error is not None:
        raise error
    return result


def _outcome(function: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return function(), None
    except BaseException as error:
        return None, error


def _eventually(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _succeeds(registry: ToolRegistry, name: str) -> bool:
    try:
        registry.invoke(name)
    except ToolTimeoutError:
        return False
    return True


def _threads_of_ours() -> int:
    return sum(t.name == "codex-tools-worker" for t in threading.enumerate())


class TestStuckSyncToolsStarveNobody:
    async def test_more_stuck_calls_than_an_executor_has_threads_leave_others_answering(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        registry.register(Tool(name="stuck", fn=release.wait, timeout=0.05))
        registry.register(Tool(name="instant", fn=lambda: "ok", timeout=2))
        calls = [registry.ainvoke("stuck") for _ in range(3 * MAX_WORKERS)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(result, ToolTimeoutError) for result in results)
        assert await registry.ainvoke("instant") == "ok"
        assert registry.invoke("instant") == "ok"
        row = registry.metrics()["stuck"]
        assert (row["failure"], row["in_flight"]) == (3 * MAX_WORKERS, 0)

    def test_abandoned_threads_are_bounded_per_tool_and_past_it_calls_fail_fast(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        other_release = threading.Event()
        registry.register(Tool(name="stuck", fn=release.wait, timeout=0.001))
        registry.register(Tool(name="other", fn=other_release.wait, timeout=0.001))
        registry.register(Tool(name="instant", fn=lambda: "ok", timeout=2))
        messages = set()
        for _ in range(500):
            with pytest.raises(ToolTimeoutError) as raised:
                registry.invoke("stuck")
            messages.add("too many" in str(raised.value))
        try:
            assert messages == {False, True}
            assert _threads_of_ours() <= MAX_WORKERS + MAX_ABANDONED_PER_TOOL
            with pytest.raises(ToolTimeoutError, match="timed out after"):
                registry.invoke("other")  # its own bound: it still gets a thread
            assert registry.invoke("instant") == "ok"
            row = registry.metrics()["stuck"]
            assert (row["failure"], row["in_flight"], row["success"]) == (500, 0, 0)
            assert row["last_error"]["type"] == "TimeoutError"
        finally:
            other_release.set()
        release.set()
        assert _eventually(lambda: _succeeds(registry, "stuck"))  # the abandoned calls ended

    async def test_a_burst_of_concurrent_calls_stays_bounded_too(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        registry.register(Tool(name="stuck", fn=release.wait, timeout=0.01))
        for _ in range(5):
            calls = [registry.ainvoke("stuck") for _ in range(200)]
            await asyncio.gather(*calls, return_exceptions=True)
        # the pool, the tool's bound, and the calls already running when it was reached
        assert _threads_of_ours() <= 2 * MAX_WORKERS + MAX_ABANDONED_PER_TOOL
        assert registry.metrics()["stuck"]["failure"] == 1000
        release.set()
        assert _eventually(lambda: _threads_of_ours() <= MAX_WORKERS)  # the abandoned ended


class TestAsyncToolsUnderInvoke:
    def test_an_async_tool_blocked_in_to_thread_returns_at_its_deadline(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        async def waits_in_a_thread() -> None:
            await asyncio.to_thread(release.wait)

        registry.register(Tool(name="t", fn=waits_in_a_thread, timeout=0.1))
        with pytest.raises(ToolTimeoutError):
            _returns_within(20, lambda: registry.invoke("t"))

    def test_an_async_tool_blocking_its_own_loop_returns_at_its_deadline(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        async def blocks_the_loop() -> None:
            release.wait()  # a sync call in a coroutine: no await point to cancel at

        registry.register(Tool(name="t", fn=blocks_the_loop, timeout=0.1))
        with pytest.raises(ToolTimeoutError):
            _returns_within(20, lambda: registry.invoke("t"))
        assert registry.metrics()["t"]["failure"] == 1

    def test_run_auto_returns_while_the_stuck_thread_runs_on(
        self, registry: ToolRegistry, release: threading.Event
    ) -> None:
        registry.register(Tool(name="stuck", fn=release.wait, timeout=0.2))
        model = ScriptedModel(
            [
                [
                    {"type": "tool.call.required", "call_id": "c1", "tool_name": "stuck"},
                    {"type": "turn.completed"},
                ],
                [{"type": "turn.completed", "final_response": "gave up"}],
            ]
        )
        result = _returns_within(20, lambda: run_auto(model, "go", registry=registry))
        assert result.final_response == "gave up"
        assert [failure.error_type for failure in result.tool_failures] == ["ToolTimeoutError"]


SCRIPT = """
import asyncio, threading, codex_tools as c
from codex_tools.autorun import ScriptedModel, run_auto

forever = threading.Event()

async def in_a_thread() -> None:
    await asyncio.to_thread(forever.wait)

c.register(c.Tool(name="stuck", fn=forever.wait, timeout=0.2))
c.register(c.Tool(name="stuck_async", fn=in_a_thread, timeout=0.2))
for call in (
    lambda: asyncio.run(c.ainvoke("stuck")),
    lambda: c.invoke("stuck"),
    lambda: c.invoke("stuck_async"),
):
    try:
        call()
    except c.ToolTimeoutError:
        pass
model = ScriptedModel([
    [{"type": "tool.call.required", "call_id": "c1", "tool_name": "stuck"},
     {"type": "turn.completed"}],
    [{"type": "turn.completed", "final_response": "done"}],
])
print(run_auto(model, "go").final_response, c.metrics()["stuck"]["failure"], flush=True)
"""


def test_a_process_whose_tools_are_stuck_exits_at_once_when_done() -> None:
    """``asyncio.run`` waits for its default executor at shutdown and the interpreter
    joins ``concurrent.futures`` threads at exit: neither may hold this process."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "done 3\n", "")


INTERRUPTED = """
import sys, threading, codex_tools as c
from codex_tools.autorun import ScriptedModel, run_auto

def nap() -> None:
    print("napping", file=sys.stderr, flush=True)
    threading.Event().wait()

c.register(nap)
c.register(lambda: "ok", name="warm")  # a worker is idle, and handed the nap at once
model = ScriptedModel([
    [{"type": "tool.call.required", "call_id": "c0", "tool_name": "warm"},
     {"type": "turn.completed"}],
    [{"type": "tool.call.required", "call_id": "c1", "tool_name": "nap"},
     {"type": "turn.completed"}],
])
try:
    run_auto(model, "go")
except KeyboardInterrupt:
    print("interrupted", c.metrics()["nap"]["failure"], flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_while_a_worker_runs_a_tool_ends_run_auto_at_once() -> None:
    """The signal may land just before the loop sleeps in ``select``: the loop's wakeup
    fd must wake it, or the handler waits for an event that never comes."""
    for _ in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(INTERRUPTED)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stderr is not None
            assert child.stderr.readline() == "napping\n"
            child.send_signal(signal.SIGINT)
            out, _ = child.communicate(timeout=10)
        finally:
            child.kill()
        assert out == "interrupted 1\n"


STUCK_TOOLS = """
import threading
from codex_tools import tool

forever = threading.Event()


@tool(timeout=0.2)
def stuck() -> str:
    \"\"\"Never returns.\"\"\"
    forever.wait()
    return "never"
"""


def test_the_mcp_server_exits_when_stdin_closes_though_a_tool_is_stuck(tmp_path: Path) -> None:
    (tmp_path / "stuck_tools.py").write_text(STUCK_TOOLS)
    server = subprocess.Popen(
        [sys.executable, "-m", "codex_tools", "mcp", "stuck_tools.py"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        for message in (
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "test", "version": "1"},
                },
            },
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "stuck"}},
        ):
            server.stdin.write(json.dumps(message) + "\n")
            server.stdin.flush()
        answers = [json.loads(server.stdout.readline()) for _ in range(2)]
        assert answers[1]["result"]["isError"] is True
        assert "timed out" in answers[1]["result"]["content"][0]["text"]
        server.stdin.close()
        assert server.wait(timeout=60) == 0  # not when the stuck thread ends: never
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
        assert server.stderr is not None
        server.stderr.close()


FORKED = """
import os, threading, codex_tools as c

forever = threading.Event()
c.register(c.Tool(name="stuck", fn=forever.wait, timeout=0.01))
c.register(c.Tool(name="instant", fn=lambda: "ok", timeout=5))
for _ in range(100):  # up to the tool's bound of abandoned threads, then failing fast
    try:
        c.invoke("stuck")
    except c.ToolTimeoutError:
        pass
pid = os.fork()
if pid == 0:  # the parent's workers do not exist here; nor do its abandoned calls
    try:
        c.invoke("stuck")
    except c.ToolTimeoutError as error:
        fresh = "too many" not in str(error)
    os._exit(0 if fresh and c.invoke("instant") == "ok" else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), c.invoke("instant"))
"""


def test_a_forked_child_starts_with_a_pool_of_its_own() -> None:
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", textwrap.dedent(FORKED)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "0 ok\n"), done.stderr
