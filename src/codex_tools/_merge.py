"""``merge_metrics``: the snapshots of several processes combined into one.

Where every call of every process counts the same way, the merge is exact: counts,
retries, ``in_flight`` and ``total_latency_ms`` are summed, ``min``/``max`` combined, and
when every input of a tool carries ``latency_buckets`` its percentiles come from the
summed buckets through the same code as a snapshot's, so they equal those of one process
that saw every call. What only the latest event decides has no order across processes,
so a rule stands in for it:

- ``consecutive_failures`` is summed: the failures that no later success of the same
  process followed (0 exactly when the last call of every process succeeded);
- ``last_error`` comes from the first input, in the order given, whose tool is failing
  now (``consecutive_failures > 0``), else from the first input that has one;
- ``last_latency_ms`` comes from the first input that has one.

Inputs are checked as they are read: a wrong type is a ``TypeError``, a wrong value (a
missing key, a negative count, NaN, a bucket bound off our grid) a ``ValueError``, each
naming the snapshot, the tool and the key.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from codex_tools._metrics import BOUND_INDEX, latency_buckets, percentiles

__all__ = ["merge_metrics"]

_NO_MIN = 1 << 63
_COUNTS = ("success", "failure", "retries", "in_flight", "consecutive_failures")
_repr = reprlib.Repr()  # a hostile value is shown cut short in the error
_repr.maxstring = _repr.maxother = 60
_show = _repr.repr


def merge_metrics(
    snapshots: Iterable[Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """One snapshot from the snapshots (``metrics()`` dicts) of several processes.

    Give every input ``buckets=True`` for exact merged percentiles (and merged
    ``latency_buckets`` in the result); without, the percentiles are None.
    """
    if isinstance(snapshots, Mapping | str | bytes):
        raise TypeError(
            f"merge_metrics takes a list of snapshots, not {type(snapshots).__name__}: "
            "wrap a single snapshot in a list"
        )
    tools: dict[str, _Tool] = {}
    for number, snapshot in enumerate(snapshots):
        if type(snapshot) is not dict and not isinstance(snapshot, Mapping):
            raise TypeError(
                f"merge_metrics: snapshot {number} is {type(snapshot).__name__}, "
                "not a dict of tools"
            )
        where = _Where(number, "")
        for name, entry in snapshot.items():
            where.name = name
            if type(name) is not str and not isinstance(name, str):
                raise TypeError(
                    f"merge_metrics: snapshot {number} has a key {_show(name)}, not a tool name"
                )
            if type(entry) is not dict and not isinstance(entry, Mapping):  # the ABC is slow
                raise TypeError(
                    f"merge_metrics: snapshot {number}, tool {_show(name)} is "
                    f"{type(entry).__name__}, not a dict"
                )
            merged = tools.get(name)
            if merged is None:
                merged = tools[name] = _Tool()
            merged.add(entry, where)
    return {name: merged.result() for name, merged in tools.items()}


class _Where:
    """Which input is being read (one per snapshot, its ``name`` moved along the tools):
    the text of an error is built only if one is raised."""

    __slots__ = ("name", "number")

    def __init__(self, number: int, name: str) -> None:
        self.number = number
        self.name = name

    def fail(self, error: type[Exception], key: str, problem: str) -> NoReturn:
        raise error(
            f"merge_metrics: snapshot {self.number}, tool {_show(self.name)}: {key!r} {problem}"
        )


def _value(entry: Mapping[str, Any], key: str, where: _Where) -> Any:
    try:
        return entry[key]
    except KeyError:
        where.fail(ValueError, key, "is missing")


def _count(entry: Mapping[str, Any], key: str, where: _Where) -> int:
    value = _value(entry, key, where)
    if type(value) is not int:  # a bool is no count
        where.fail(TypeError, key, f"is {_show(value)}, not an int")
    if value < 0:
        where.fail(ValueError, key, f"is {value}, not a count (>= 0)")
    return value


def _ms(entry: Mapping[str, Any], key: str, where: _Where) -> float | None:
    value = _value(entry, key, where)
    if value is None:
        return None
    if type(value) is not float and type(value) is not int:
        where.fail(TypeError, key, f"is {_show(value)}, not a number of ms")
    if not 0 <= value < math.inf:  # NaN fails this too
        where.fail(ValueError, key, f"is {value}, not a duration (finite, >= 0)")
    return float(value)


def _error(entry: Mapping[str, Any], where: _Where) -> dict[str, str] | None:
    error = _value(entry, "last_error", where)
    if error is None:
        return None
    if not isinstance(error, Mapping):
        where.fail(TypeError, "last_error", f"is {_show(error)}, not null or an error")
    kind, message = error.get("type"), error.get("message")
    if not isinstance(kind, str) or not isinstance(message, str):
        where.fail(TypeError, "last_error", "needs a 'type' and a 'message', both strings")
    return {"type": kind, "message": message}


def _buckets(entry: Mapping[str, Any], where: _Where, hist: dict[int, int]) -> None:
    """Add ``entry``'s ``latency_buckets`` into ``hist``. The loop checks only what keeps
    it right, in one test per bucket; on anything odd, ``_bucket_problem`` says what."""
    buckets = entry["latency_buckets"]
    if not isinstance(buckets, list | tuple):
        where.fail(TypeError, "latency_buckets", f"is {_show(buckets)}, not a list")
    previous = -1
    index_of = BOUND_INDEX.__getitem__
    count_of = hist.get
    try:
        for bound, count in buckets:
            index = index_of(bound)  # a bound equal to one of the grid's, or KeyError
            if index <= previous or type(count) is not int or count < 0:
                break
            hist[index] = count_of(index, 0) + count
            previous = index
        else:
            return
    except (KeyError, TypeError, ValueError):  # no pair, a bound off the grid or unhashable
        pass
    error, problem = _bucket_problem(buckets)
    where.fail(error, "latency_buckets", problem)


def _bucket_problem(buckets: list[Any] | tuple[Any, ...]) -> tuple[type[Exception], str]:
    previous = -1
    for bucket in buckets:
        if not isinstance(bucket, list | tuple) or len(bucket) != 2:
            return TypeError, f"has {_show(bucket)}, not [bound, count]"
        bound, count = bucket
        try:
            index = BOUND_INDEX.get(bound)
        except TypeError:  # unhashable
            index = None
        if index is None:
            return ValueError, f"has a bound {_show(bound)} off the bucket grid"
        if type(count) is not int or count < 0:
            return ValueError, f"has a count {_show(count)}"
        if index <= previous:
            return ValueError, "is not in ascending order"
        previous = index
    return ValueError, "is not a list of buckets"  # not reached: the fast loop found one


class _Tool:
    """One tool's numbers, summed over the inputs read so far."""

    __slots__ = (
        "consecutive",
        "error",
        "error_now",
        "failure",
        "high",
        "hist",
        "in_flight",
        "last_ms",
        "low",
        "retries",
        "success",
        "total_ms",
    )

    def __init__(self) -> None:
        self.success = self.failure = self.retries = self.in_flight = self.consecutive = 0
        self.total_ms = 0.0
        self.low, self.high = _NO_MIN, -1  # ns, as a snapshot keeps them
        self.last_ms: float | None = None
        self.error: dict[str, str] | None = None
        self.error_now = False  # whether ``error`` is from an input failing now
        self.hist: dict[int, int] | None = {}  # None once an input comes without buckets

    def add(self, entry: Mapping[str, Any], where: _Where) -> None:
        try:
            counts = success, failure, retries, in_flight, failing = (
                entry["success"],
                entry["failure"],
                entry["retries"],
                entry["in_flight"],
                entry["consecutive_failures"],
            )
            total, low, high = (
                entry["total_latency_ms"],
                entry["min_latency_ms"],
                entry["max_latency_ms"],
            )
            last, error = entry["last_latency_ms"], entry["last_error"]
        except KeyError as missing:
            where.fail(ValueError, str(missing.args[0]), "is missing")
        if not (
            type(success) is int
            and type(failure) is int
            and type(retries) is int
            and type(in_flight) is int
            and type(failing) is int
            and min(counts) >= 0
        ):
            for key in _COUNTS:
                _count(entry, key, where)  # raises, saying which one is wrong
        if not (
            type(total) is float
            and 0.0 <= total < math.inf
            and (low is None or (type(low) is float and 0.0 <= low < math.inf))
            and (high is None or (type(high) is float and 0.0 <= high < math.inf))
            and (last is None or (type(last) is float and 0.0 <= last < math.inf))
        ):  # an int of ms is fine too: the slow way takes it, or says what is wrong
            total = _ms(entry, "total_latency_ms", where)
            if total is None:
                where.fail(TypeError, "total_latency_ms", "is None, not a number of ms")
            low, high = _ms(entry, "min_latency_ms", where), _ms(entry, "max_latency_ms", where)
            last = _ms(entry, "last_latency_ms", where)
        self.success += success
        self.failure += failure
        self.retries += retries
        self.in_flight += in_flight
        self.consecutive += failing
        self.total_ms += total
        if low is not None and high is not None and low <= high:
            # back to the ns that a snapshot divided by 1e6: exact below 2**51 ns (26 days)
            self.low = min(self.low, round(low * 1e6))
            self.high = max(self.high, round(high * 1e6))
        elif low is not None or high is not None:
            where.fail(ValueError, "min_latency_ms", f"is {low} with a maximum of {high}")
        if self.last_ms is None:
            self.last_ms = last
        if error is not None:
            error = _error(entry, where)
            if not self.error_now and (self.error is None or failing):
                self.error, self.error_now = error, failing > 0
        if "latency_buckets" not in entry:
            self.hist = None
        else:  # checked also when an input before had none, for the error it may hold
            _buckets(entry, where, {} if self.hist is None else self.hist)

    def result(self) -> dict[str, Any]:
        ended = self.success + self.failure
        seen = self.high >= 0
        p50 = p95 = p99 = None
        hist = self.hist
        order = [] if hist is None else sorted(hist)
        if hist is not None:
            low, high = (self.low, self.high) if seen else (0, _NO_MIN)
            p50, p95, p99 = percentiles(hist, order, low, high)
        entry: dict[str, Any] = {
            "success": self.success,
            "failure": self.failure,
            "last_error": self.error,
            "last_latency_ms": self.last_ms,
            "total_latency_ms": self.total_ms,
            "retries": self.retries,
            "consecutive_failures": self.consecutive,
            "in_flight": self.in_flight,
            "min_latency_ms": self.low / 1e6 if seen else None,
            "max_latency_ms": self.high / 1e6 if seen else None,
            "p50_latency_ms": p50,
            "p95_latency_ms": p95,
            "p99_latency_ms": p99,
            "success_rate": self.success / ended if ended else None,
        }
        if hist is not None:
            entry["latency_buckets"] = latency_buckets(hist, order)
        return entry
