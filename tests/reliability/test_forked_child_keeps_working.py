"""A process forked after tool calls (a worker pool, a pre-forking server) must not
deadlock on a lock some other thread held at the fork, and must start from a clear
state: the parent's counts up to the fork, none of the parent's other threads' calls in
flight (those threads do not exist in the child). See docs/reliability.md."""

from __future__ import annotations

import json
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest

from codex_tools import ToolError, ToolRegistry, telemetry, tool

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns about forking a process with threads: exactly the case tested.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]
CHILD_TIMEOUT = 30.0


@tool
def work(fail: bool) -> int:
    if fail:
        raise ValueError("failing on purpose")
    return 1


def _report_and_exit(write_fd: int, body: Callable[[], Any]) -> None:
    """In the child: send what ``body`` returns (or how it failed) and leave at once."""
    try:
        try:
            report = {"ok": body()}
        except BaseException as error:
            report = {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(report).encode()
        while data:
            data = data[os.write(write_fd, data) :]
    finally:
        os._exit(0)


def _read_report(read_fd: int, pid: int) -> Any:
    """In the parent: the child's report, or a failure if it hangs (then it is killed)."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(
                    f"the forked child hung for {CHILD_TIMEOUT} s (a lock held at the fork?)"
                )
            chunk = os.read(read_fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    report = json.loads(b"".join(chunks))
    assert "error" not in report, report["error"]
    return report["ok"]


def _in_child(body: Callable[[], Any]) -> Any:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _report_and_exit(write_fd, body)
    os.close(write_fd)
    return _read_report(read_fd, pid)


def _call_from_threads(registry: ToolRegistry, threads: int, calls: int) -> None:
    def run() -> None:
        for n in range(calls):
            with suppress(ToolError):
                registry.invoke("work", {"fail": n % 4 == 0})

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


@contextmanager
def _locks_held_by_another_thread(registry: ToolRegistry) -> Iterator[None]:
    """Hold every lock the library has, in a thread that is not the forking one.

    Internal names on purpose: the only way to fork, deterministically, at the moment
    another thread is registering, resetting, attaching or recording a failure.
    """
    locks = [
        registry._lock,
        registry._metrics._lock,
        registry._metrics.stats("work").lock,
        telemetry._lock,
    ]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(CHILD_TIMEOUT)
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(CHILD_TIMEOUT)
    try:
        yield
    finally:
        release.set()
        holder.join()


def test_forked_child_starts_with_working_locks_even_if_held_at_the_fork(
    registry: ToolRegistry,
) -> None:
    registry.register(work)
    _call_from_threads(registry, threads=4, calls=100)

    def child() -> dict[str, Any]:
        registry.invoke("work", {"fail": False})
        with suppress(ToolError):
            registry.invoke("work", {"fail": True})  # a failure takes the tool's lock
        registry.register(work, name="new")  # the registry's lock
        registry.invoke("new", {"fail": False})  # the store's lock, for new stats
        with telemetry.capture() as events:  # the handler table's lock
            registry.invoke("new", {"fail": False})
        snapshot = registry.metrics()
        registry.reset_metrics()
        return {"snapshot": snapshot, "events": len(events), "after_reset": registry.metrics()}

    with _locks_held_by_another_thread(registry):
        report = _in_child(child)
    assert report["snapshot"]["work"]["success"] == 300 + 1
    assert report["snapshot"]["work"]["failure"] == 100 + 1
    assert report["snapshot"]["new"]["success"] == 2
    assert report["events"] == 2
    assert report["after_reset"] == {}
    assert registry.metrics()["work"]["success"] == 300  # the child's calls stay its own


def test_forked_child_inherits_the_counts_but_not_other_threads_calls_in_flight(
    registry: ToolRegistry,
) -> None:
    registry.register(work)
    entered, release = threading.Event(), threading.Event()

    def blocking() -> str:
        entered.set()
        assert release.wait(CHILD_TIMEOUT)
        return "done"

    registry.register(blocking)
    _call_from_threads(registry, threads=3, calls=40)
    caller = threading.Thread(target=registry.invoke, args=("blocking",))
    caller.start()
    assert entered.wait(CHILD_TIMEOUT)
    try:
        report = _in_child(
            lambda: [
                registry.metrics(),
                registry.invoke("work", {"fail": False}),
                registry.metrics(),
            ]
        )
    finally:
        release.set()
        caller.join()
    inherited, _, after = report
    assert (inherited["work"]["success"], inherited["work"]["failure"]) == (90, 30)
    assert inherited["work"]["in_flight"] == 0
    assert inherited["blocking"]["in_flight"] == 0  # its thread does not exist in the child
    assert after["work"]["success"] == 91
    parent = registry.metrics()
    assert (parent["work"]["success"], parent["blocking"]["success"]) == (90, 1)
    assert parent["blocking"]["in_flight"] == 0


def test_a_call_that_forks_ends_in_both_processes(registry: ToolRegistry) -> None:
    """The forking thread's own call is still running in the child, and ends there."""
    read_fd, write_fd = os.pipe()
    registry.register(os.fork, name="fork")
    pid = registry.invoke("fork")
    if pid == 0:
        os.close(read_fd)
        _report_and_exit(write_fd, registry.metrics)
    os.close(write_fd)
    child = _read_report(read_fd, pid)
    assert child["fork"]["success"] == 1
    assert child["fork"]["in_flight"] == 0
    assert registry.metrics()["fork"]["success"] == 1
