"""A process forked after tool calls (a worker pool, a pre-forking server) must not
deadlock on a lock some other thread held at the fork, and must start with empty
metrics: it counts only the calls it starts, so the parent and its children summed
count every call once. See docs/reliability.md."""

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

from codex_tools import ToolError, ToolRegistry, merge_metrics, telemetry, tool

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
    assert report["snapshot"]["work"]["success"] == 1
    assert report["snapshot"]["work"]["failure"] == 1
    assert report["snapshot"]["new"]["success"] == 2
    assert report["events"] == 2
    assert report["after_reset"] == {}
    assert registry.metrics()["work"]["success"] == 300  # the child's calls stay its own


def test_forked_child_starts_empty_and_counts_only_its_own_calls(
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
    at_fork, _, after = report
    assert at_fork == {}  # not even the call in flight in another thread
    assert set(after) == {"work"}
    assert (after["work"]["success"], after["work"]["failure"]) == (1, 0)
    parent = registry.metrics()
    assert (parent["work"]["success"], parent["work"]["failure"]) == (90, 30)
    assert (parent["blocking"]["success"], parent["blocking"]["in_flight"]) == (1, 0)


def test_pre_fork_parent_and_children_summed_count_every_call_once(
    registry: ToolRegistry,
) -> None:
    """The parent calls, forks three workers that call, and calls again: the snapshots of
    all four, merged, count each call exactly once (a failure in every fourth)."""
    registry.register(work)
    _call_from_threads(registry, threads=2, calls=20)  # 30 successes, 10 failures

    def worker(calls: int) -> Callable[[], Any]:
        def body() -> Any:
            _call_from_threads(registry, threads=1, calls=calls)
            return registry.metrics(buckets=True)

        return body

    children = [_in_child(worker(calls)) for calls in (8, 12, 16)]
    _call_from_threads(registry, threads=1, calls=4)  # after the forks: 3 and 1 more

    merged = merge_metrics([registry.metrics(buckets=True), *children])
    assert [child["work"]["success"] + child["work"]["failure"] for child in children] == [
        8,
        12,
        16,
    ]
    assert (merged["work"]["success"], merged["work"]["failure"]) == (33 + 27, 11 + 9)
    assert sum(count for _, count in merged["work"]["latency_buckets"]) == 80
    assert merged["work"]["in_flight"] == 0


def test_a_call_that_forks_is_counted_in_the_parent_only(registry: ToolRegistry) -> None:
    """The forking thread's own call is still running in the child and ends there, but
    it started in the parent: the child, starting empty, does not count it."""
    read_fd, write_fd = os.pipe()
    registry.register(os.fork, name="fork")
    pid = registry.invoke("fork")
    if pid == 0:
        os.close(read_fd)
        _report_and_exit(write_fd, registry.metrics)
    os.close(write_fd)
    assert _read_report(read_fd, pid) == {}
    assert registry.metrics()["fork"]["success"] == 1
