"""Scenario 9: timeouts bound the caller's wait, and the call core split cost nothing.

- 10,000 timeouts of a sync tool stuck on an Event (timeout 1 ms): the threads alive
  stay within the documented bound, the RSS grows by at most 20 MB, and an instant tool
  still answers, as fast as before.
- ``run_auto`` with a tool stuck past its 0.2 s timeout returns within 1 s of the
  deadline while the stuck thread runs on.
- ``invoke``'s overhead against the registry as it was before the call core moved to
  its own module (read from git at :data:`BEFORE`), interleaved in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import threading
import time
import types
from pathlib import Path
from typing import Any

from benchmarks._harness import Check, Row, Sizes, interleave, loop, ns
from benchmarks._tools import ARGS, add, calls
from codex_tools import Tool, ToolRegistry, ToolTimeoutError
from codex_tools._runners import MAX_ABANDONED_PER_TOOL, MAX_WORKERS
from codex_tools.autorun import ScriptedModel, run_auto

__all__ = ["run"]

#: main before the call core was split out of ``_registry.py``
BEFORE = "8906c5e"
ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "9 timeouts"
MB = 1 << 20


def run(sizes: Sizes, check: Check) -> list[Row]:
    return _stuck(sizes, check) + _run_auto(check) + _before_and_after(sizes, check)


def _rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * 4096


def _instant_latency(registry: ToolRegistry, n: int = 300) -> float:
    """Median wall ns of one call of a tool that needs a worker (it has a timeout)."""
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        registry.invoke("instant")
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples)


def _stuck(sizes: Sizes, check: Check) -> list[Row]:
    n = 300 if sizes.quick else 10_000
    release = threading.Event()
    registry = ToolRegistry()
    registry.register(Tool(name="stuck", fn=release.wait, timeout=0.001))
    registry.register(Tool(name="instant", fn=lambda: "ok", timeout=1.0))
    before_latency = _instant_latency(registry)
    threads_before = threading.active_count()
    rss_before = peak_rss = _rss()
    most_threads = threads_before
    fail_fast = 0
    start = time.perf_counter_ns()
    try:
        for i in range(n):
            try:
                registry.invoke("stuck")
            except ToolTimeoutError as error:
                fail_fast += "too many" in str(error)
            if i % 50 == 0:
                most_threads = max(most_threads, threading.active_count())
                peak_rss = max(peak_rss, _rss())
        per_call = (time.perf_counter_ns() - start) / n
        after_latency = _instant_latency(registry)
        answered = registry.invoke("instant") == "ok"
        row = registry.metrics()["stuck"]
    finally:
        release.set()
    bound = threads_before + MAX_WORKERS + MAX_ABANDONED_PER_TOOL
    growth = max(peak_rss, _rss()) - rss_before
    counted = check(
        (row["failure"], row["in_flight"], row["success"]) == (n, 0, 0),
        f"stuck: {row['failure']} failures, {row['in_flight']} in flight for {n} timeouts",
    )
    return [
        Row(
            SCENARIO,
            f"{n:,} timeouts of a stuck sync tool (1 ms): per call (wall)",
            per_call,
            "ns",
            check=counted,
        ),
        Row(
            SCENARIO,
            f"… of which failed fast, no thread started (bound: {MAX_ABANDONED_PER_TOOL} a tool)",
            fail_fast,
            "calls",
            baseline="timeouts",
            ratio=fail_fast / n,
        ),
        Row(
            SCENARIO,
            "… threads alive at most",
            most_threads,
            "threads",
            baseline=f"{threads_before} before",
            ratio=most_threads / threads_before,
            target=f"≤ {bound} (pool {MAX_WORKERS} + bound {MAX_ABANDONED_PER_TOOL})",
            met=most_threads <= bound,
        ),
        Row(
            SCENARIO,
            "… RSS growth",
            growth / MB,
            "MB",
            target="≤ 20 MB",
            met=growth <= 20 * MB,
        ),
        Row(
            SCENARIO,
            "… an instant tool (on a worker) still answers: latency after (wall)",
            after_latency,
            "ns",
            baseline="before the timeouts",
            ratio=after_latency / before_latency,
            target="answers",
            met=answered,
            check=check(answered, "the instant tool did not answer after the timeouts"),
        ),
    ]


def _run_auto(check: Check) -> list[Row]:
    """``run_auto`` returns soon after its stuck tool's deadline, thread still stuck."""
    release = threading.Event()
    registry = ToolRegistry()
    registry.register(Tool(name="stuck", fn=release.wait, timeout=0.2))
    turns = [
        [
            {"type": "tool.call.required", "call_id": "c1", "tool_name": "stuck"},
            {"type": "turn.completed"},
        ],
        [{"type": "turn.completed", "final_response": "gave up"}],
    ]
    past: list[float] = []
    try:
        for _ in range(3):
            start = time.perf_counter()
            result = run_auto(ScriptedModel(turns), "go", registry=registry)
            past.append(time.perf_counter() - start - 0.2)
            stuck_still = not release.is_set()
    finally:
        release.set()
    late = statistics.median(past)
    return [
        Row(
            SCENARIO,
            "run_auto, tool stuck past its 0.2 s timeout: return after the deadline (wall)",
            late * 1e9,
            "ns",
            target="≤ 1 s",
            met=late <= 1.0,
            check=check(
                result.final_response == "gave up" and stuck_still,
                f"run_auto: {result.final_response!r}, stuck thread still running {stuck_still}",
            ),
            samples=[s * 1e9 for s in past],
        )
    ]


def _registry_before() -> Any:
    """A ``ToolRegistry`` of the code at :data:`BEFORE`, or None outside a git checkout."""
    try:
        source = subprocess.run(
            ["git", "show", f"{BEFORE}:src/codex_tools/_registry.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    module = types.ModuleType("benchmarks._registry_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{BEFORE}:_registry.py", "exec"), module.__dict__)
    return module.ToolRegistry()


def _before_and_after(sizes: Sizes, check: Check) -> list[Row]:
    before = _registry_before()
    case = f"invoke overhead after the call core split / before it ({BEFORE})"
    if before is None:
        return [Row(SCENARIO, case, None, "ns", check="n/a")]
    after = ToolRegistry()
    before.register(add)
    after.register(add)
    namespace = {"before": before.invoke, "after": after.invoke, "f": add.fn, "args": ARGS}
    timings = interleave(
        {
            "direct": loop("f(a=1, b=2)", namespace),
            "before": loop('before("add", args)', namespace),
            "after": loop('after("add", args)', namespace),
        },
        sizes.repeats,
        sizes.target_s,
    )
    direct = ns(timings.median("direct"))
    overhead_before = ns(timings.median("before")) - direct
    overhead_after = ns(timings.median("after")) - direct
    ratio = overhead_after / overhead_before
    counted = calls(after, "add")
    return [
        Row(
            SCENARIO,
            case,
            overhead_after,
            "ns",
            baseline=f"{overhead_before:,.0f} ns before",
            ratio=ratio,
            target="≤ 1.10x",
            met=ratio <= 1.10,
            check=check(
                counted == timings.operations["after"],
                f"after: {counted} counted for {timings.operations['after']} calls",
            ),
        )
    ]
