from __future__ import annotations

import contextlib
import gc
import json
import math
import queue
import sys
import threading
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codex_tools import ToolExecutionError, ToolRegistry, _metrics
from codex_tools._metrics import Shard, ToolStats, bucket_index, bucket_value
from threads_support import watched

KEYS = [
    "success",
    "failure",
    "last_error",
    "last_latency_ms",
    "total_latency_ms",
    "retries",
    "consecutive_failures",
    "in_flight",
    "min_latency_ms",
    "max_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "success_rate",
]


def fail_when(flag: bool) -> str:
    if flag:
        raise ValueError("asked to fail")
    return "ok"


class TestSnapshot:
    def test_counters_increment_on_success_and_failure(self, registry: ToolRegistry) -> None:
        registry.register(fail_when)
        registry.invoke("fail_when", {"flag": False})
        registry.invoke("fail_when", {"flag": False})
        with pytest.raises(ToolExecutionError):
            registry.invoke("fail_when", {"flag": True})
        snapshot = registry.metrics()
        assert list(snapshot) == ["fail_when"]
        row = snapshot["fail_when"]
        assert list(row) == KEYS
        assert (row["success"], row["failure"], row["in_flight"]) == (2, 1, 0)
        assert row["consecutive_failures"] == 1
        assert row["success_rate"] == pytest.approx(2 / 3)
        assert row["last_error"] == {"type": "ValueError", "message": "asked to fail"}
        assert 0 < row["min_latency_ms"] <= row["p50_latency_ms"] <= row["max_latency_ms"]
        assert row["total_latency_ms"] >= row["max_latency_ms"]
        json.dumps(snapshot)

    def test_a_success_ends_the_failure_run_but_keeps_the_last_error(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(fail_when)
        for _ in range(3):
            with pytest.raises(ToolExecutionError):
                registry.invoke("fail_when", {"flag": True})
        assert registry.metrics()["fail_when"]["consecutive_failures"] == 3
        registry.invoke("fail_when", {"flag": False})
        row = registry.metrics()["fail_when"]
        assert row["consecutive_failures"] == 0
        assert row["last_error"]["type"] == "ValueError"

    def test_reset_starts_every_counter_afresh(self, registry: ToolRegistry) -> None:
        registry.register(fail_when)
        registry.invoke("fail_when", {"flag": False})
        registry.reset_metrics()
        assert registry.metrics() == {}
        registry.invoke("fail_when", {"flag": False})
        assert registry.metrics()["fail_when"]["success"] == 1

    def test_a_tool_not_called_since_reset_has_no_entry_and_no_rate(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(fail_when)
        assert registry.metrics() == {}

    def test_deregistered_tools_keep_their_numbers_until_reset(
        self, registry: ToolRegistry
    ) -> None:
        handle = registry.register(fail_when)
        registry.invoke("fail_when", {"flag": False})
        registry.deregister(handle)
        assert registry.metrics()["fail_when"]["success"] == 1
        registry.reset_metrics()
        assert registry.metrics() == {}

    def test_total_latency_is_the_sum_of_reported_durations(self, registry: ToolRegistry) -> None:
        from codex_tools import telemetry

        registry.register(fail_when)
        with telemetry.capture(telemetry.TOOL_SUCCESS, telemetry.TOOL_FAILURE) as events:
            for i in range(50):
                with contextlib.suppress(ToolExecutionError):
                    registry.invoke("fail_when", {"flag": i % 3 == 0})
        row = registry.metrics()["fail_when"]
        total_ns = sum(event.measurements["duration"] for event in events)
        assert row["total_latency_ms"] == total_ns / 1e6
        assert row["last_latency_ms"] == events[-1].measurements["duration_ms"]
        assert row["max_latency_ms"] == max(e.measurements["duration"] for e in events) / 1e6


class TestLastError:
    def test_the_message_is_bounded(self, registry: ToolRegistry) -> None:
        def loud() -> None:
            raise RuntimeError("x" * 1_000_000)

        registry.register(loud)
        with pytest.raises(ToolExecutionError):
            registry.invoke("loud")
        message = registry.metrics()["loud"]["last_error"]["message"]
        assert len(message) <= 1000
        assert message.startswith("xxx")

    def test_an_unprintable_exception_is_still_recorded(self, registry: ToolRegistry) -> None:
        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        def bad() -> None:
            raise Unprintable

        registry.register(bad)
        with pytest.raises(ToolExecutionError):
            registry.invoke("bad")
        assert registry.metrics()["bad"]["last_error"] == {
            "type": "Unprintable",
            "message": "<unprintable Unprintable>",
        }

    def test_no_exception_is_kept_alive(self, registry: ToolRegistry) -> None:
        refs: list[weakref.ref[BaseException]] = []

        class Heavy(Exception):
            payload = b""

        def heavy() -> None:
            error = Heavy("heavy")
            error.payload = bytes(1_000_000)
            refs.append(weakref.ref(error))
            raise error

        registry.register(heavy)
        for _ in range(3):
            with pytest.raises(ToolExecutionError):
                registry.invoke("heavy")
        registry.metrics()
        gc.collect()
        assert len(refs) == 3
        assert all(ref() is None for ref in refs)


class TestHistogram:
    @given(st.integers(min_value=0, max_value=2**62))
    def test_a_bucket_midpoint_is_within_five_percent(self, ns: int) -> None:
        value = bucket_value(bucket_index(ns))
        assert abs(value - ns) <= 0.05 * ns + 0.5

    @given(st.integers(min_value=0, max_value=2**50), st.integers(min_value=0, max_value=2**50))
    def test_buckets_are_monotone(self, a: int, b: int) -> None:
        if a <= b:
            assert bucket_index(a) <= bucket_index(b)

    @settings(max_examples=60)
    @given(st.lists(st.integers(min_value=1, max_value=10**11), min_size=1, max_size=400))
    def test_percentiles_are_within_five_percent_of_the_exact_ones(
        self, durations: list[int]
    ) -> None:
        stats = ToolStats()
        shard = stats.new_shard(1)
        for ns in durations:
            shard.started += 1
            shard.record(ns, True)
        row = stats.snapshot()
        ordered = sorted(durations)
        for key, q in (("p50_latency_ms", 0.5), ("p95_latency_ms", 0.95), ("p99_latency_ms", 0.99)):
            exact = ordered[math.ceil(q * len(ordered)) - 1] / 1e6
            assert row[key] == pytest.approx(exact, rel=0.05)

    def test_memory_per_tool_does_not_grow_with_calls(self) -> None:
        def size(shard: Shard) -> int:
            return sys.getsizeof(shard.hist) + sum(
                sys.getsizeof(k) + sys.getsizeof(v) for k, v in shard.hist.items()
            )

        shard = ToolStats().new_shard(1)
        for ns in range(1000, 2_000_000, 997):
            shard.record(ns, True)
        after_2k = size(shard)
        for _ in range(50):
            for ns in range(1000, 2_000_000, 997):
                shard.record(ns, False)
        assert size(shard) == after_2k
        assert len(shard.hist) < 1000


def test_snapshot_shape_is_json_ready_for_every_state(registry: ToolRegistry) -> None:
    registry.register(fail_when)
    registry.invoke("fail_when", {"flag": False})
    decoded: dict[str, Any] = json.loads(json.dumps(registry.metrics()))
    assert decoded == registry.metrics()


@pytest.mark.usefixtures("tiny_switch_interval")
class TestCallsEndedInAnotherThread:
    """A ``MeasuredCall`` begun in one thread and ended in another is started in one shard
    and ended in another: no snapshot may count it twice, nor as less than nothing."""

    def test_the_invariant_holds_in_every_snapshot(self, registry: ToolRegistry) -> None:
        started, enders = 4_000, 4
        calls = [registry.measure("handed_over") for _ in range(started)]  # all begun here

        def end(share: list[Any]) -> None:
            for i, call in enumerate(share):
                if i % 3:
                    call.succeed(i)
                else:
                    call.fail(ValueError(i))

        workers = [threading.Thread(target=end, args=(calls[n::enders],)) for n in range(enders)]
        snapshots = watched(lambda: registry.metrics()["handed_over"], *workers)
        final = registry.metrics()["handed_over"]
        assert (final["success"] + final["failure"], final["in_flight"]) == (started, 0)
        assert snapshots
        for row in snapshots:
            assert row["success"] + row["failure"] + row["in_flight"] == started
            assert row["in_flight"] >= 0

    def test_in_flight_stays_within_the_calls_handed_over(self, registry: ToolRegistry) -> None:
        """One thread begins calls while two end them: a snapshot reading the starter's
        shard before calls begin and the enders' after they end must not go negative."""
        registry.measure("queued").succeed()  # this thread's shard is read first
        pending, total = 8, 6_000
        handed: queue.Queue[Any] = queue.Queue(maxsize=pending)

        def begin() -> None:
            for _ in range(total):
                handed.put(registry.measure("queued"))
            for _ in range(2):
                handed.put(None)

        def end() -> None:
            while (call := handed.get()) is not None:
                call.succeed()

        workers = [threading.Thread(target=begin), *(threading.Thread(target=end) for _ in "ab")]
        snapshots = watched(lambda: registry.metrics()["queued"], *workers)
        assert registry.metrics()["queued"]["success"] == total + 1
        # at most the queue, one call in each ender's hands and one being put
        assert all(0 <= row["in_flight"] <= pending + 3 for row in snapshots)

    def test_a_shard_read_the_slow_way_does_not_count_others_starts(
        self, registry: ToolRegistry, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The slow way is taken when the shard's owner keeps ending calls while it is read
        (rare with the GIL, not without): an ender's shard started nothing."""
        monkeypatch.setattr(_metrics, "_READ_TRIES", 0)
        calls = [registry.measure("slow_read") for _ in range(3)]
        ender = threading.Thread(target=lambda: [call.succeed() for call in calls])
        ender.start()
        ender.join()
        shards = registry._metrics.stats("slow_read").shards
        assert [_metrics._counts(shard) for shard in shards.values()] == [(0, 0, 3), (3, 0, 0)]
