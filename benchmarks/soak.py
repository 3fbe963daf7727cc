"""Soak: minutes of mixed load on one registry, then an exact reconciliation.

Sync threads and an asyncio loop call tools that succeed, fail (raising exceptions that
hold 64 KB), time out, get cancelled and are retried, while another thread registers and
deregisters a tool and attaches and detaches a handler. Every ``--interval`` seconds the
load pauses at a call boundary, the metrics are reconciled exactly against what the
callers saw and what the telemetry reported, RSS and counts are printed, and the
metrics are reset. Exit status 1 if any counter does not reconcile or RSS grew by more
than ``--max-rss-growth-mb`` after the first period.

Run: ``python -m benchmarks.soak [--seconds 600] [--interval 30]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from codex_tools import RetryPolicy, ToolError, ToolRegistry, telemetry, tool

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1 << 20
# The caller's record of the attempts its current call made: set by the caller, bumped by
# the start handler, which runs in the caller's thread or task (so the same context).
_attempts: contextvars.ContextVar[list[int]] = contextvars.ContextVar("attempts")


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * _PAGE


class HeavyError(Exception):
    """A failure holding a buffer, as a failed HTTP call holds its response body."""

    def __init__(self) -> None:
        super().__init__("failed on purpose")
        self.payload = b"\x01" * (64 * 1024)


def _maybe_fail(fail: bool) -> None:
    if fail:
        raise HeavyError


def build_registry() -> ToolRegistry:
    registry = ToolRegistry()

    @tool
    def compute(n: int, fail: bool) -> int:
        _maybe_fail(fail)
        return n * 2

    @tool
    async def fetch(seconds: float, fail: bool) -> str:
        await asyncio.sleep(seconds)
        _maybe_fail(fail)
        return "ok"

    @tool(quick=True)
    def lookup(n: int, fail: bool) -> int:
        _maybe_fail(fail)
        return n

    @tool(timeout=0.01)
    async def deadline(seconds: float, fail: bool) -> str:
        await asyncio.sleep(seconds)
        _maybe_fail(fail)
        return "ok"

    @tool(retry=RetryPolicy(max_attempts=3, backoff=None))
    def flaky(n: int, fail: bool) -> int:
        _maybe_fail(fail and random.random() < 0.7)
        return n

    for each in (compute, fetch, lookup, deadline, flaky):
        registry.register(each)
    return registry


class Ledger:
    """What callers and handlers saw in one period; merged under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.success: Counter[str] = Counter()  # calls whose caller got a result
        self.failure: Counter[str] = Counter()  # failed attempts, as the caller counts them
        self.started: Counter[str] = Counter()  # start events
        self.ended: Counter[str] = Counter()  # success and failure events
        self.retries: Counter[str] = Counter()  # start events tagged retry=True
        self.duration_ns: Counter[str] = Counter()  # sum of the reported durations
        self.outcomes: Counter[str] = Counter()  # what callers got, by kind

    def caller(self, name: str, attempts: int, ok: bool, kind: str) -> None:
        with self.lock:
            self.success[name] += ok
            self.failure[name] += attempts - ok
            self.outcomes[kind] += 1

    def on_start(self, _e: Any, _m: Any, meta: Mapping[str, Any], _c: Any) -> None:
        attempts = _attempts.get(None)
        if attempts is not None:
            attempts[0] += 1
        with self.lock:
            self.started[meta["tool"]] += 1
            self.retries[meta["tool"]] += meta["retry"]

    def on_end(
        self, _e: Any, measurements: Mapping[str, Any], meta: Mapping[str, Any], _c: Any
    ) -> None:
        with self.lock:
            self.ended[meta["tool"]] += 1
            self.duration_ns[meta["tool"]] += measurements["duration"]


class Load:
    """The workers, pausable at call boundaries so a period can be reconciled exactly."""

    def __init__(self, registry: ToolRegistry, threads: int) -> None:
        self.registry = registry
        self.ledger = Ledger()
        self.running = threading.Event()
        self.stopping = False
        self.paused = threading.Semaphore(0)  # one release per worker that parked
        self.workers = [
            threading.Thread(target=self._sync_worker, args=(n,)) for n in range(threads)
        ]
        self.workers.append(threading.Thread(target=lambda: asyncio.run(self._async_worker())))
        self.workers.append(threading.Thread(target=self._churn_worker))

    def on_start(self, *event: Any) -> None:
        self.ledger.on_start(*event)

    def on_end(self, *event: Any) -> None:
        self.ledger.on_end(*event)

    def start(self) -> None:
        self.running.set()
        for worker in self.workers:
            worker.start()

    def pause(self) -> None:
        """Return once every worker is parked between calls."""
        self.running.clear()
        for _ in self.workers:
            self.paused.acquire()

    def resume(self) -> None:
        self.ledger = Ledger()
        self.running.set()

    def stop(self) -> None:
        self.stopping = True
        self.running.set()
        for worker in self.workers:
            worker.join()

    def _park(self) -> bool:
        """Between calls: wait while paused; False once stopping."""
        if not self.running.is_set():
            self.paused.release()
            self.running.wait()
        return not self.stopping

    def _call(self, name: str, args: dict[str, Any]) -> None:
        attempts = [0]
        token = _attempts.set(attempts)
        try:
            self.registry.invoke(name, args)
        except ToolError as error:
            self.ledger.caller(name, attempts[0], False, type(error).__name__)
        else:
            self.ledger.caller(name, attempts[0], True, "ok")
        finally:
            _attempts.reset(token)

    def _sync_worker(self, seed: int) -> None:
        rng = random.Random(seed)
        while self._park():
            for _ in range(100):
                name = rng.choice(("compute", "compute", "lookup", "flaky", "fetch"))
                fail = rng.random() < 0.5  # half of them raise, holding 64 KB
                if name == "fetch":
                    args: dict[str, Any] = {"seconds": 0.0, "fail": fail}
                else:
                    args = {"n": rng.randrange(1000), "fail": fail}
                self._call(name, args)

    async def _async_worker(self) -> None:
        rng = random.Random(-1)

        async def one(name: str, args: dict[str, Any], caller_timeout: float | None) -> None:
            attempts = [0]
            _attempts.set(attempts)  # this task's own context
            try:
                work = self.registry.ainvoke(name, args)
                if caller_timeout is None:
                    await work
                else:
                    await asyncio.wait_for(work, caller_timeout)
            except (ToolError, TimeoutError, asyncio.CancelledError) as error:
                self.ledger.caller(name, attempts[0], False, type(error).__name__)
            else:
                self.ledger.caller(name, attempts[0], True, "ok")

        while await asyncio.to_thread(self._park):
            tasks = []
            for _ in range(200):
                name = rng.choice(("fetch", "fetch", "deadline", "lookup", "flaky"))
                if name in ("fetch", "deadline"):
                    args: dict[str, Any] = {
                        "seconds": rng.uniform(0, 0.02),
                        "fail": rng.random() < 0.2,
                    }
                else:
                    args = {"n": 1, "fail": rng.random() < 0.2}
                caller_timeout = rng.uniform(0, 0.02) if rng.random() < 0.1 else None
                tasks.append((asyncio.create_task(one(name, args, caller_timeout)), caller_timeout))
            await asyncio.sleep(0.005)
            for task, caller_timeout in tasks:
                # A cancelled wait_for() may drop a result asyncio already had: never do it.
                if caller_timeout is None and rng.random() < 0.05:
                    task.cancel()
            await asyncio.gather(*(task for task, _ in tasks), return_exceptions=True)

    def _churn_worker(self) -> None:
        def ignore(*_: Any) -> None:
            pass

        while self._park():
            for _ in range(50):
                handle = self.registry.register(lambda: None, name="churn")
                self.registry.deregister(handle)
                telemetry.attach("soak-churn", telemetry.TOOL_SUCCESS, ignore)
                telemetry.detach("soak-churn")
            time.sleep(0.001)


def reconcile(snapshot: dict[str, dict[str, Any]], ledger: Ledger) -> list[str]:
    """Every mismatch between the metrics and what callers and handlers saw."""
    problems = []
    names = set(snapshot) | set(ledger.started)
    for name in sorted(names):
        row = snapshot.get(name)
        if row is None:
            problems.append(f"{name}: {ledger.started[name]} starts but no metrics")
            continue
        expected = {
            "success": ledger.success[name],
            "failure": ledger.failure[name],
            "in_flight": 0,
            "retries": ledger.retries[name],
            "success + failure": ledger.started[name],
            "ended": ledger.ended[name],
            "total_latency_ms": ledger.duration_ns[name] / 1e6,
        }
        actual = {
            "success": row["success"],
            "failure": row["failure"],
            "in_flight": row["in_flight"],
            "retries": row["retries"],
            "success + failure": row["success"] + row["failure"],
            "ended": row["success"] + row["failure"],
            "total_latency_ms": row["total_latency_ms"],
        }
        problems += [
            f"{name}: {key} is {actual[key]}, expected {expected[key]}"
            for key in expected
            if actual[key] != expected[key]
        ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run (600)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds per period (30)")
    parser.add_argument("--threads", type=int, default=4, help="sync calling threads (4)")
    parser.add_argument("--max-rss-growth-mb", type=float, default=20.0)
    options = parser.parse_args(argv)

    registry = build_registry()
    load = Load(registry, options.threads)
    # Through the load, not bound to one ledger: each period gets a fresh one.
    telemetry.attach("soak-start", telemetry.TOOL_START, load.on_start)
    telemetry.attach_many("soak-end", [telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE], load.on_end)
    began = time.monotonic()
    load.start()
    totals: Counter[str] = Counter()
    problems: list[str] = []
    baseline_rss = None
    period = 0
    print(f"soak: {options.seconds:.0f} s, a reconciliation every {options.interval:.0f} s")
    try:
        while not problems:
            elapsed = time.monotonic() - began
            time.sleep(max(0.0, min(options.interval, options.seconds - elapsed)))
            load.pause()
            period += 1
            snapshot, ledger = registry.metrics(), load.ledger
            problems = reconcile(snapshot, ledger)
            calls = sum(row["success"] + row["failure"] for row in snapshot.values())
            totals.update(ledger.outcomes)
            totals["attempts"] += calls
            totals["failed"] += sum(row["failure"] for row in snapshot.values())
            rss = rss_bytes()
            if period == 1:
                baseline_rss = rss
            print(
                f"[{time.monotonic() - began:6.0f} s] rss {rss / _MB:7.1f} MB  "
                f"attempts {calls:>9,}  outcomes {dict(sorted(ledger.outcomes.items()))}  "
                f"{'reconciled' if not problems else 'MISMATCH'}",
                flush=True,
            )
            registry.reset_metrics()
            if time.monotonic() - began >= options.seconds:
                break
            load.resume()
    finally:
        load.stop()
        telemetry.detach("soak-start")
        telemetry.detach("soak-end")
    growth = (rss_bytes() - (baseline_rss or 0)) / _MB
    print(
        f"total: {totals['attempts']:,} attempts ({totals['failed']:,} failed) over {period} "
        f"periods; outcomes {dict(totals)}"
    )
    print(f"RSS growth after the first period: {growth:.1f} MB")
    for problem in problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    if growth > options.max_rss_growth_mb:
        print(
            f"RSS grew by {growth:.1f} MB (limit {options.max_rss_growth_mb} MB)", file=sys.stderr
        )
        return 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
