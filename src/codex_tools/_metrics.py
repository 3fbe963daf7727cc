"""Per-tool metrics: counters striped per thread, merged when a snapshot is taken.

Every thread that invokes a tool writes only to its own shard of that tool's stats, so
the call path takes no lock and loses no update, with or without the GIL (a shard has one
writer; readers only sum). The exception is what only the latest event decides,
``last_error`` and ``consecutive_failures``: they change under a per-tool lock, taken only
when a call fails or succeeds right after failures.

``in_flight`` is derived as ``started - success - failure``, from counts of each shard
taken at one moment (see ``_counts``), so the contract's invariant
``success + failure + in_flight == started`` holds by construction and ``in_flight``
counts only calls that had begun and not yet ended. But a ``MeasuredCall`` may end in
another thread than the one it began in: started in one shard, ended in another read a
moment later. So a shard's ends may exceed its starts, and only the total is clamped at
zero (one comparison per tool), for a snapshot that read a start too early.
``reset`` swaps in new stats: calls in flight across it finish on the old ones, unseen.

Latency percentiles come from a log-bucketed histogram over nanoseconds: 16 buckets per
power of two, each reported at its midpoint, so the relative error is at most 1/32
(3.1%), and a tool never has more than ~1,000 buckets however many calls it sees.
``snapshot(buckets=True)`` also gives the non-empty buckets, each named by the largest
duration it holds (``upper_bound_ms``), so that snapshots of several processes can be
merged (``_merge``) into what one process that saw every call would report.
"""

from __future__ import annotations

import math
import threading
from typing import Any

__all__ = [
    "BOUND_INDEX",
    "MIDPOINTS",
    "MetricsStore",
    "Shard",
    "ToolStats",
    "bucket_index",
    "bucket_value",
    "error_info",
    "latency_buckets",
    "percentiles",
]

_SUB_BITS = 4  # 2**4 buckets per power of two
_EXACT = 1 << (_SUB_BITS + 1)  # values below this get a bucket each
MAX_ERROR_MESSAGE = 1000
_READ_TRIES = 8  # for the counts of a shard whose owner keeps ending calls (see _counts)
_NO_MIN = 1 << 62  # above any duration, so the first one always replaces it
_get_ident = threading.get_ident
_ceil = math.ceil


def bucket_index(ns: int) -> int:
    """The histogram bucket of a duration: monotone in ``ns``, 16 per power of two."""
    shift = ns.bit_length() - _SUB_BITS - 1
    return ns if shift <= 0 else (shift << _SUB_BITS) + (ns >> shift)


def bucket_value(index: int) -> float:
    """The midpoint of a bucket, in ns (exact below 32 ns)."""
    if index < _EXACT:
        return float(index)
    shift = (index >> _SUB_BITS) - 1
    return ((index - (shift << _SUB_BITS)) + 0.5) * (1 << shift)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - 1] + "…"


def _upper_bound(index: int) -> int:
    """The largest duration (ns) that falls in a bucket."""
    if index < _EXACT:
        return index
    shift = (index >> _SUB_BITS) - 1
    return ((index - (shift << _SUB_BITS) + 1) << shift) - 1


_BUCKETS = range(bucket_index((1 << 63) - 1) + 1)  # every bucket, up to 2**63 ns
#: Every bucket's midpoint (ns): a snapshot looks them up.
MIDPOINTS = [bucket_value(index) for index in _BUCKETS]
#: Every bucket's upper bound in ms, as ``latency_buckets`` gives it.
_UPPER_MS = [_upper_bound(index) / 1e6 for index in _BUCKETS]
#: The bucket of each ``upper_bound_ms``: how a merge reads buckets back (exact floats, as
#: a JSON round trip keeps them).
BOUND_INDEX = {bound: index for index, bound in enumerate(_UPPER_MS)}


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:  # noqa: BLE001  (a broken __str__ must not hide the failure)
        return _bounded(f"<unprintable {type(error).__name__}>")
    return _bounded(text)


def error_info(error: BaseException, type_name: str | None = None) -> dict[str, str]:
    """``{"type", "message"}`` of an error: bounded (a class name can be as long as a
    message, when made at run time), and holding no exception object."""
    return {"type": _bounded(type_name or type(error).__name__), "message": _message(error)}


class Shard:
    """One thread's counters for one tool. Only that thread writes it."""

    __slots__ = (
        "failure",
        "hist",
        "max_ns",
        "min_ns",
        "owner",
        "retries",
        "started",
        "stats",
        "success",
        "total_ns",
    )

    def __init__(self, stats: ToolStats, owner: int) -> None:
        self.stats = stats
        self.owner = owner
        self.started = 0
        self.success = 0
        self.failure = 0
        self.retries = 0
        self.total_ns = 0
        self.min_ns = _NO_MIN
        self.max_ns = -1
        self.hist: dict[int, int] = {}

    def record(self, ns: int, ok: bool) -> None:
        """Count the end of one call that took ``ns`` (``bucket_index`` inlined: hot path).

        A failure's ``last_error`` is the caller's to set, through ``ToolStats.failed``.
        """
        if ok:
            self.success += 1
        else:
            self.failure += 1
        self.total_ns += ns
        if ns < self.min_ns:  # noqa: PLR1730  (min() and max() cost a call here)
            self.min_ns = ns
        if ns > self.max_ns:  # noqa: PLR1730
            self.max_ns = ns
        shift = ns.bit_length() - _SUB_BITS - 1
        index = ns if shift <= 0 else (shift << _SUB_BITS) + (ns >> shift)
        try:
            self.hist[index] += 1
        except KeyError:  # a bucket's first call; cheaper than .get() for every other
            self.hist[index] = 1
        stats = self.stats
        stats.last_ns = ns
        if ok and stats.consecutive_failures:
            stats.end_failure_run()


class ToolStats:
    """All shards of one tool, plus what only the most recent call decides."""

    __slots__ = ("consecutive_failures", "last_error", "last_ns", "lock", "shards")

    def __init__(self) -> None:
        self.shards: dict[int, Shard] = {}
        self.lock = threading.Lock()
        self.last_ns = -1
        self.last_error: dict[str, str] | None = None
        self.consecutive_failures = 0

    def new_shard(self, owner: int) -> Shard:
        """The calling thread's shard, made on its first call."""
        with self.lock:
            shard = self.shards.get(owner)
            if shard is None:
                shard = self.shards[owner] = Shard(self, owner)
        return shard

    def end_failure_run(self) -> None:
        """A success after failures; callers check ``consecutive_failures`` first, so the
        common success takes no lock."""
        with self.lock:
            self.consecutive_failures = 0

    def failed(self, info: dict[str, str]) -> None:
        with self.lock:
            self.consecutive_failures += 1
            self.last_error = info

    def snapshot(self, buckets: bool = False) -> dict[str, Any]:
        shards = list(self.shards.values())
        last_error = self.last_error
        success = failure = retries = total_ns = 0
        low, high = _NO_MIN, -1
        hist: dict[int, int] = {}
        started = 0
        for shard in shards:
            # _counts' first try, inlined: a shard's owner is seldom ending a call right now
            shard_success, shard_failure = shard.success, shard.failure
            shard_started = shard.started
            if shard.success != shard_success or shard.failure != shard_failure:
                shard_success, shard_failure, shard_started = _counts(shard)
            success += shard_success
            failure += shard_failure
            started += shard_started
            retries += shard.retries
            total_ns += shard.total_ns
            if shard.min_ns < low:  # noqa: PLR1730  (min() and max() cost a call here)
                low = shard.min_ns
            if shard.max_ns > high:  # noqa: PLR1730
                high = shard.max_ns
            if hist:
                for index, count in shard.hist.copy().items():
                    hist[index] = hist.get(index, 0) + count
            else:
                hist = shard.hist.copy()
        ended = success + failure
        last_ns = self.last_ns
        order = sorted(hist)
        p50, p95, p99 = percentiles(hist, order, low, high)
        entry: dict[str, Any] = {
            "success": success,
            "failure": failure,
            "last_error": None if last_error is None else dict(last_error),  # the caller's
            "last_latency_ms": None if last_ns < 0 else last_ns / 1e6,
            "total_latency_ms": total_ns / 1e6,
            "retries": retries,
            "consecutive_failures": self.consecutive_failures,
            "in_flight": started - ended if started > ended else 0,  # see the module's doc
            "min_latency_ms": None if high < 0 else low / 1e6,
            "max_latency_ms": None if high < 0 else high / 1e6,
            "p50_latency_ms": p50,
            "p95_latency_ms": p95,
            "p99_latency_ms": p99,
            "success_rate": success / ended if ended else None,
        }
        if buckets:
            entry["latency_buckets"] = latency_buckets(hist, order)
        return entry


def _counts(shard: Shard) -> tuple[int, int, int]:
    """``(success, failure, started)`` of one shard as they were at one moment.

    The owner counts a call's start before its end, so ``started`` read between two equal
    readings of the outcomes is exact for that moment. Reading the outcomes of every shard
    and only then the starts also counted each call that began and ended in between as in
    flight: thousands under load. An owner ending calls through every try gets the starts
    read first, which can only miss a call that began meanwhile; they are not raised to
    the ends, since a shard may end calls that other shards started (the snapshot clamps
    the total instead).
    """
    for _ in range(_READ_TRIES):
        success, failure = shard.success, shard.failure
        started = shard.started
        if shard.success == success and shard.failure == failure:
            return success, failure, started
    started = shard.started
    return shard.success, shard.failure, started


def percentiles(hist: dict[int, int], order: list[int], low: int, high: int) -> list[float | None]:
    """Nearest-rank p50, p95, p99 in ms, each the midpoint of its bucket clamped to
    [min, max] (``low``, ``high`` in ns; ``order`` is ``sorted(hist)``). It runs once per
    tool in every snapshot, hence the plain loop, and one bucket's value serves every
    percentile that falls in it. Merged snapshots go through it too, so that they agree
    with one process that saw every call."""
    total = sum(hist.values())
    if not total:
        return [None, None, None]
    # the ranks wanted, then one that no count reaches, so the inner loop needs no bound
    ranks = (_ceil(0.50 * total), _ceil(0.95 * total), _ceil(0.99 * total), total + 1)
    result: list[float | None] = []
    seen = 0
    for index in order:
        seen += hist[index]
        if seen >= ranks[len(result)]:
            value = MIDPOINTS[index]
            value = (low if value < low else high if value > high else value) / 1e6
            while seen >= ranks[len(result)]:
                result.append(value)
            if len(result) == 3:
                break
    return result


def latency_buckets(hist: dict[int, int], order: list[int]) -> list[list[float | int]]:
    """``[[upper_bound_ms, count], ...]`` of a histogram (``order`` is ``sorted(hist)``)."""
    upper = _UPPER_MS
    return [[upper[index], hist[index]] for index in order]


class MetricsStore:
    """The stats of every tool of one registry, keyed by name."""

    __slots__ = ("_lock", "by_name")

    def __init__(self) -> None:
        #: read without the lock: ``_call.begin`` looks up the stats a call is counted in
        self.by_name: dict[str, ToolStats] = {}
        self._lock = threading.Lock()

    def shard(self, name: str) -> Shard:
        """The calling thread's shard of ``name``'s stats: where its calls are counted
        (``_call.begin`` has it inlined)."""
        stats = self.by_name.get(name) or self.stats(name)
        ident = _get_ident()
        return stats.shards.get(ident) or stats.new_shard(ident)

    def stats(self, name: str) -> ToolStats:
        """The stats of ``name``, made on its first counted call."""
        stats = self.by_name.get(name)
        if stats is None:
            with self._lock:
                stats = self.by_name.setdefault(name, ToolStats())
        return stats

    def snapshot(self, buckets: bool = False) -> dict[str, dict[str, Any]]:
        return {name: stats.snapshot(buckets) for name, stats in list(self.by_name.items())}

    def reset(self) -> None:
        with self._lock:
            self.by_name = {}

    def after_fork_in_child(self) -> None:
        """Empty metrics, so that summing a pre-fork server's processes counts every call
        once: the child counts only the calls it starts. A call the forking thread had in
        flight ends on the old stats, unseen, as across a reset; their locks are made
        afresh all the same, since another thread may have held one at the fork."""
        self._lock = threading.Lock()
        for stats in self.by_name.values():
            stats.lock = threading.Lock()
        self.by_name = {}
