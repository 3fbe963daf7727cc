"""Snapshots with buckets, and merging the snapshots of several processes into one."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_tools import ToolExecutionError, ToolRegistry, merge_metrics
from codex_tools._metrics import MetricsStore, bucket_index
from test_metrics import KEYS

Calls = list[tuple[int, bool]]  # (duration in ns, succeeded)
# What a merge gets exactly right; the rest is summed in floats or decided by a rule.
BY_RULE = {"last_error", "last_latency_ms", "total_latency_ms", "consecutive_failures"}
EXACT_KEYS = (*(key for key in KEYS if key not in BY_RULE), "latency_buckets")


def snapshot_of(calls: Calls, name: str = "t") -> dict[str, dict[str, Any]]:
    """The snapshot (with buckets) of one process that made ``calls``, each with a known
    duration: the single-process reference."""
    store = MetricsStore()
    for ns, ok in calls:
        shard = store.shard(name)
        shard.started += 1
        shard.record(ns, ok)
        if not ok:
            shard.stats.failed({"type": "OSError", "message": f"after {ns} ns"})
    return store.snapshot(buckets=True)


def over_json(snapshot: dict[str, Any]) -> Any:
    """What another process's endpoint hands over."""
    return json.loads(json.dumps(snapshot))


durations = st.integers(min_value=0, max_value=2**50)  # up to 13 days
calls_strategy = st.lists(st.tuples(durations, st.booleans()), max_size=60)


class TestBuckets:
    def test_buckets_are_the_non_empty_ones_ascending_each_bounding_its_calls(self) -> None:
        calls = [(ns, True) for ns in (5, 5, 40, 1_000, 1_001, 999_999, 10**9, 10**9 + 7)]
        buckets = snapshot_of(calls)["t"]["latency_buckets"]

        bounds = [bound for bound, _ in buckets]
        assert bounds == sorted(set(bounds))
        assert all(count > 0 for _, count in buckets)
        assert sum(count for _, count in buckets) == len(calls)
        for ns, _ in calls:  # each call is in the first bucket whose bound it does not pass
            bound, _ = next(bucket for bucket in buckets if ns / 1e6 <= bucket[0])
            assert bucket_index(round(bound * 1e6)) == bucket_index(ns)
        assert buckets[0] == [5 / 1e6, 2]  # below 32 ns every duration has a bucket

    def test_buckets_come_only_when_asked_for(self) -> None:
        registry = ToolRegistry()
        registry.register(lambda: None, name="noop")
        registry.invoke("noop")

        assert "latency_buckets" not in registry.metrics()["noop"]
        with_buckets = registry.metrics(buckets=True)["noop"]
        assert sum(count for _, count in with_buckets.pop("latency_buckets")) == 1
        assert with_buckets.keys() == registry.metrics()["noop"].keys()

    def test_a_tool_with_only_calls_in_flight_has_no_buckets(self) -> None:
        store = MetricsStore()
        store.shard("t").started += 1
        assert store.snapshot(buckets=True)["t"]["latency_buckets"] == []


class TestMergedEqualsOneProcess:
    @settings(max_examples=100, deadline=None)
    @given(st.lists(calls_strategy, min_size=1, max_size=5))
    def test_merged_snapshots_equal_one_process_that_saw_every_call(
        self, processes: list[Calls]
    ) -> None:
        every_call = [call for calls in processes for call in calls]
        reference = snapshot_of(every_call)
        merged = merge_metrics([over_json(snapshot_of(calls)) for calls in processes])

        if not every_call:
            assert merged == {}
            return
        for key in EXACT_KEYS:
            assert merged["t"][key] == reference["t"][key], key
        assert merged["t"]["total_latency_ms"] == pytest.approx(reference["t"]["total_latency_ms"])

    def test_merging_is_associative(self) -> None:
        parts = [[(ns * 7919 % 10**8, ns % 3 > 0) for ns in range(k, 300, 4)] for k in range(4)]
        snapshots = [snapshot_of(calls) for calls in parts]
        stepwise = merge_metrics([merge_metrics(snapshots[:2]), merge_metrics(snapshots[2:])])
        at_once = merge_metrics(snapshots)
        for key in EXACT_KEYS:
            assert stepwise["t"][key] == at_once["t"][key]

    def test_tools_seen_by_some_processes_only_are_kept(self) -> None:
        merged = merge_metrics([snapshot_of([(10, True)], "a"), snapshot_of([(20, False)], "b")])
        assert (merged["a"]["success"], merged["b"]["failure"]) == (1, 1)

    def test_no_snapshots_merge_into_an_empty_one(self) -> None:
        assert merge_metrics([]) == {}
        assert merge_metrics(iter([{}, {}])) == {}


class TestWithoutBuckets:
    def test_percentiles_are_none_unless_every_input_has_buckets(self) -> None:
        with_buckets = snapshot_of([(1_000, True)])
        without = copy.deepcopy(with_buckets)
        del without["t"]["latency_buckets"]

        for inputs in ([without, without], [with_buckets, without], [without, with_buckets]):
            merged = merge_metrics(inputs)["t"]
            assert merged["success"] == 2
            assert merged["min_latency_ms"] == merged["max_latency_ms"] == 0.001
            assert merged["p50_latency_ms"] is None
            assert "latency_buckets" not in merged

    def test_plain_metrics_merge_their_counts(self) -> None:
        registry = ToolRegistry()
        registry.register(lambda: 1, name="one")
        for _ in range(3):
            registry.invoke("one")
        merged = merge_metrics([registry.metrics()] * 2)["one"]
        assert (merged["success"], merged["success_rate"]) == (6, 1.0)


class TestWhatNoOrderDecides:
    def test_consecutive_failures_are_summed(self) -> None:
        merged = merge_metrics(
            [
                snapshot_of([(1, False), (1, False)]),
                snapshot_of([(1, False), (1, True)]),
                snapshot_of([(1, False)]),
            ]
        )
        assert merged["t"]["consecutive_failures"] == 3
        assert merged["t"]["success_rate"] == pytest.approx(1 / 5)

    def test_last_error_is_from_the_first_input_failing_now(self) -> None:
        recovered = snapshot_of([(1, False), (2, True)])  # "after 1 ns", not failing now
        failing = snapshot_of([(3, False)])  # "after 3 ns", failing now
        also_failing = snapshot_of([(4, False)])
        merged = merge_metrics([recovered, failing, also_failing])
        assert merged["t"]["last_error"] == {"type": "OSError", "message": "after 3 ns"}
        assert merged["t"]["last_latency_ms"] == 2 / 1e6  # the first input's

    def test_last_error_of_inputs_not_failing_now_is_the_first_one(self) -> None:
        first, second = snapshot_of([(1, False), (2, True)]), snapshot_of([(5, False), (6, True)])
        no_error = snapshot_of([(7, True)])
        merged = merge_metrics([no_error, first, second])
        assert merged["t"]["last_error"] == {"type": "OSError", "message": "after 1 ns"}

    def test_a_merged_error_is_a_copy(self) -> None:
        registry = ToolRegistry()

        def broken() -> None:
            raise ValueError("nope")

        registry.register(broken)
        with pytest.raises(ToolExecutionError):
            registry.invoke("broken")
        snapshot = registry.metrics()
        merged = merge_metrics([snapshot])
        merged["broken"]["last_error"]["message"] = "changed"
        assert snapshot["broken"]["last_error"]["message"] == "nope"


def broken(change: str) -> Any:
    """A snapshot made wrong in one place (``change`` is Python run on ``entry``)."""
    snapshot = over_json(snapshot_of([(100, True), (2_000, False)]))
    entry = snapshot["t"]
    exec(change, {"entry": entry, "math": math})
    return snapshot


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ("del entry['failure']", ValueError, "'failure' is missing"),
        ("entry['success'] = -1", ValueError, "'success' is -1, not a count"),
        ("entry['success'] = '3'", TypeError, "'success' is '3', not an int"),
        ("entry['retries'] = True", TypeError, "'retries' is True, not an int"),
        ("entry['in_flight'] = 1.0", TypeError, "'in_flight' is 1.0, not an int"),
        ("entry['total_latency_ms'] = math.nan", ValueError, "'total_latency_ms' is nan"),
        ("entry['total_latency_ms'] = -1.0", ValueError, "'total_latency_ms' is -1.0"),
        ("entry['total_latency_ms'] = None", TypeError, "'total_latency_ms' is None"),
        ("entry['last_error'] = {'type': 'E'}", TypeError, "'last_error' needs a 'type'"),
        ("entry['max_latency_ms'] = math.inf", ValueError, "'max_latency_ms' is inf"),
        ("entry['min_latency_ms'] = '0.1'", TypeError, "'min_latency_ms' is '0.1'"),
        ("entry['min_latency_ms'] = 1e9", ValueError, "'min_latency_ms' is 1000000000.0"),
        ("entry['min_latency_ms'] = None", ValueError, "'min_latency_ms' is None"),
        ("entry['last_error'] = 'boom'", TypeError, "'last_error' is 'boom'"),
        ("entry['last_error'] = {'type': 1}", TypeError, "'last_error' needs a 'type'"),
        ("entry['latency_buckets'] = {}", TypeError, "'latency_buckets' is {}, not a list"),
        ("entry['latency_buckets'][0] = [1]", TypeError, "has [1], not [bound, count]"),
        ("entry['latency_buckets'][0][0] = 0.0001", ValueError, "bound 0.0001 off the bucket"),
        ("entry['latency_buckets'][0][0] = math.nan", ValueError, "bound nan off the bucket"),
        ("entry['latency_buckets'][0][0] = '1'", ValueError, "bound '1' off the bucket"),
        ("entry['latency_buckets'][0][1] = -2", ValueError, "has a count -2"),
        ("entry['latency_buckets'][0][1] = 1.5", ValueError, "has a count 1.5"),
        ("entry['latency_buckets'].reverse()", ValueError, "is not in ascending order"),
        ("entry['latency_buckets'].append(entry['latency_buckets'][-1])", ValueError, "order"),
    ],
)
def test_a_wrong_snapshot_is_a_clear_error_naming_the_tool_and_key(
    change: str, error: type[Exception], words: str
) -> None:
    good = over_json(snapshot_of([(5, True)]))
    without_buckets = copy.deepcopy(good)
    del without_buckets["t"]["latency_buckets"]
    for first in (good, without_buckets):
        with pytest.raises(error) as raised:
            merge_metrics([first, broken(change)])
        assert str(raised.value).startswith("merge_metrics: snapshot 1, tool 't': ")
        assert words in str(raised.value)


@pytest.mark.parametrize(
    ("snapshots", "error", "words"),
    [
        ({"t": {}}, TypeError, "a list of snapshots, not dict"),
        ("snapshot", TypeError, "a list of snapshots, not str"),
        ([[]], TypeError, "snapshot 0 is list, not a dict of tools"),
        ([{1: {}}], TypeError, "snapshot 0 has a key 1, not a tool name"),
        ([{}, {"t": None}], TypeError, "snapshot 1, tool 't' is NoneType, not a dict"),
        ([{"\udc80\n'": {}}], ValueError, """tool "\\udc80\\n'": 'success' is missing"""),
    ],
)
def test_what_is_not_a_list_of_snapshots_gets_a_clear_error(
    snapshots: Any, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as raised:
        merge_metrics(snapshots)
    assert words in str(raised.value)


def test_whole_milliseconds_written_as_ints_are_fine() -> None:
    snapshot = broken("entry.update(min_latency_ms=0, max_latency_ms=3, total_latency_ms=5)")
    merged = merge_metrics([snapshot, snapshot])["t"]
    assert (merged["min_latency_ms"], merged["max_latency_ms"]) == (0.0, 3.0)
    assert merged["total_latency_ms"] == 10.0


def test_a_huge_wrong_value_is_shown_cut_short() -> None:
    with pytest.raises(TypeError) as raised:
        merge_metrics([broken("entry['success'] = 'x' * 10_000")])
    assert "'success' is 'xxxxxxxx" in str(raised.value)
    assert len(str(raised.value)) < 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(key=st.sampled_from([*EXACT_KEYS, "total_latency_ms", "last_error"]), value=json_values)
def test_any_wrong_value_is_a_type_or_value_error(key: str, value: Any) -> None:
    snapshot = over_json(snapshot_of([(100, True), (2_000, False)]))
    snapshot["t"][key] = value
    error: Exception | None = None
    try:
        merge_metrics([snapshot])
    except (TypeError, ValueError) as raised:
        error = raised
    assert error is None or str(error).startswith("merge_metrics: snapshot 0, tool 't': ")
