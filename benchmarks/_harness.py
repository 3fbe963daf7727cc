"""Timing primitives: calibrated loops, interleaved repeats, medians.

Single-threaded loops are timed on the thread's CPU clock (``time.thread_time``): time
the scheduler gives to other processes on a shared machine is not charged to the code
under test. Anything that waits on another thread or on an event loop's I/O is timed
on the wall clock, since waiting is part of its cost there.
"""

from __future__ import annotations

import dataclasses
import gc
import statistics
import time
import timeit
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Check", "Row", "Sizes", "Timings", "interleave", "loop", "ns"]

#: ``run(n)`` performs ``n`` operations and returns the seconds they took.
Run = Callable[[int], float]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much work each scenario does: ``quick`` shrinks everything for smoke runs."""

    quick: bool
    repeats: int  # interleaved rounds per timing group; the median is reported
    target_s: float  # each timed loop is calibrated to last about this long
    thread_calls: int  # calls per round, over all threads
    tool_counts: tuple[int, ...]  # metrics() with this many tools
    memory_calls: tuple[int, int]
    concurrent: int  # ainvoke calls gathered at once

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if quick:
            return cls(True, 3, 0.0005, 2_000, (10, 100, 1_000), (10, 2_000), 500)
        return cls(False, 15, 0.01, 40_000, (10, 1_000, 10_000), (10, 1_000_000), 50_000)


@dataclasses.dataclass
class Row:
    """One line of the table (and one object of the JSON output).

    ``value`` is in ``unit``; ``ratio`` is ``value`` over the named ``baseline`` row's
    value (or the stated reference), both from this run.
    """

    scenario: str
    case: str
    value: float | None
    unit: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    check: str = "ok"
    samples: list[float] = dataclasses.field(default_factory=list)


class Check:
    """Collects failed self-checks; a run with any fails (exit status 1)."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    def __call__(self, condition: bool, message: str) -> str:
        if condition:
            return "ok"
        self.failures.append(message)
        return f"FAIL: {message}"


def loop(
    stmt: str, namespace: Mapping[str, Any], setup: str = "pass", clock: Any = time.thread_time
) -> Run:
    """A timed loop of ``stmt`` compiled inline, as :mod:`timeit` does: no call per
    iteration besides the statement's own, and the garbage collector off while timing."""
    return timeit.Timer(stmt, setup, timer=clock, globals=dict(namespace)).timeit


@dataclasses.dataclass
class Timings:
    """Seconds per operation of each case (one sample per round), and how many
    operations each case performed in all, warm-up included, for the exact-count checks."""

    samples: dict[str, list[float]]
    operations: dict[str, int]

    def median(self, name: str) -> float:
        return statistics.median(self.samples[name])


def interleave(cases: Mapping[str, Run], repeats: int, target_s: float, start: int = 16) -> Timings:
    """Time every case ``repeats`` times, round-robin.

    Each case's loop size is doubled from ``start`` until one loop lasts ``target_s``
    (those runs are the warm-up). Each round then runs every case once, in an order rotated by one
    every round, so a burst of load from elsewhere hits all cases alike instead of one
    case's whole series.
    """
    names = list(cases)
    timings = Timings({name: [] for name in names}, dict.fromkeys(names, 0))
    sizes: dict[str, int] = {}
    for name, run in cases.items():
        n = start
        while True:
            timings.operations[name] += n
            if run(n) >= target_s or n >= 1 << 26:
                break
            n *= 2
        sizes[name] = n
    gc.collect()
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            n = sizes[name]
            timings.samples[name].append(cases[name](n) / n)
            timings.operations[name] += n
    return timings


def ns(seconds: float) -> float:
    return seconds * 1e9
