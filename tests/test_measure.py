"""``measure``: calls that run elsewhere are counted and announced exactly as ``invoke``'s."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codex_tools
from codex_tools import MeasuredCall, Tool, ToolRegistry, telemetry, tool
from codex_tools._call import running_tool, track_running
from threads_support import watched


def _row(registry: ToolRegistry, name: str) -> tuple[int, int, int]:
    row = registry.metrics()[name]
    return row["success"], row["failure"], row["in_flight"]


CONTEXT = {"call_id": "c-7", "thread_id": "t-1", "turn_id": "u-2", "originator": "langchain"}


class TestWithBlock:
    def test_a_block_that_ends_normally_is_a_success_carrying_its_output(
        self, registry: ToolRegistry
    ) -> None:
        with telemetry.capture() as events, registry.measure("search", {"q": "x"}, CONTEXT) as call:
            assert _row(registry, "search") == (0, 0, 1)
            call.output = ["a result"]
        assert _row(registry, "search") == (1, 0, 0)
        start, end = events
        assert (start.event, end.event) == (telemetry.TOOL_START, telemetry.TOOL_SUCCESS)
        for key, value in CONTEXT.items():
            assert start.metadata[key] == end.metadata[key] == value
        assert start.metadata["span_token"] == end.metadata["span_token"]
        assert start.metadata["arguments"] == {"q": "x"}
        assert (end.metadata["output"], end.metadata["result"]) == (["a result"], "ok")
        assert end.metadata["retry"] is False
        assert end.measurements["duration"] > 0

    async def test_async_with_counts_the_same_way(self, registry: ToolRegistry) -> None:
        async with registry.measure("search") as call:
            await asyncio.sleep(0)
            call.output = 3
        assert _row(registry, "search") == (1, 0, 0)
        assert registry.metrics()["search"]["total_latency_ms"] > 0

    def test_leaving_by_an_exception_is_a_failure_and_the_exception_is_unchanged(
        self, registry: ToolRegistry
    ) -> None:
        error = ConnectionError("upstream reset")
        with (
            telemetry.capture() as events,
            pytest.raises(ConnectionError) as raised,
            registry.measure("search"),
        ):
            raise error
        assert raised.value is error
        assert raised.value.__cause__ is None
        assert _row(registry, "search") == (0, 1, 0)
        assert registry.metrics()["search"]["last_error"] == {
            "type": "ConnectionError",
            "message": "upstream reset",
        }
        assert events[-1].metadata["error"] is error
        assert events[-1].metadata["result"] == "error"

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, asyncio.CancelledError, SystemExit])
    async def test_interrupts_are_counted_as_failures_and_re_raised(
        self, registry: ToolRegistry, interrupt: type[BaseException]
    ) -> None:
        instance = interrupt()
        with pytest.raises(interrupt) as raised:
            async with registry.measure("search"):
                raise instance
        assert raised.value is instance
        assert _row(registry, "search") == (0, 1, 0)
        assert registry.metrics()["search"]["last_error"]["type"] == interrupt.__name__

    async def test_a_cancelled_task_inside_the_block_counts_one_failure(
        self, registry: ToolRegistry
    ) -> None:
        entered = asyncio.Event()

        async def framework_call() -> None:
            async with registry.measure("slow"):
                entered.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(framework_call())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert _row(registry, "slow") == (0, 1, 0)
        assert registry.metrics()["slow"]["last_error"]["type"] == "CancelledError"

    def test_ending_inside_the_block_is_the_only_end(self, registry: ToolRegistry) -> None:
        with registry.measure("search") as call:
            call.fail(ValueError("shown to the model as text"))
        with pytest.raises(KeyError), registry.measure("search") as call:  # noqa: PT012  (the end is the test)
            call.succeed("done")
            raise KeyError("after the end: not counted again")
        assert _row(registry, "search") == (1, 1, 0)
        assert registry.metrics()["search"]["last_error"]["type"] == "ValueError"


class TestByHand:
    def test_succeed_and_fail_end_a_call_without_raising(self, registry: ToolRegistry) -> None:
        first = registry.measure("fetch", None, {"attempt": 2})
        second = registry.measure("fetch")
        assert _row(registry, "fetch") == (0, 0, 2)
        first.succeed({"status": 200})
        second.fail(codex_tools.ToolExecutionError("404 from upstream", tool="fetch"))
        row = registry.metrics()["fetch"]
        assert (row["success"], row["failure"], row["in_flight"], row["retries"]) == (1, 1, 0, 1)
        assert row["last_error"]["type"] == "ToolExecutionError"
        assert first.output == {"status": 200}

    @pytest.mark.parametrize("first", ["succeed", "fail", "block"])
    @pytest.mark.parametrize("second", ["succeed", "fail"])
    def test_a_second_end_raises_and_counts_nothing(
        self, registry: ToolRegistry, first: str, second: str
    ) -> None:
        call = registry.measure("fetch")
        if first == "block":
            with call:
                pass
        else:
            _end(call, first)
        with pytest.raises(RuntimeError, match="already ended"):
            _end(call, second)
        assert sum(_row(registry, "fetch")[:2]) == 1
        assert call.ended

    def test_fail_needs_an_exception(self, registry: ToolRegistry) -> None:
        call = registry.measure("fetch")
        with pytest.raises(TypeError):
            call.fail("a string")  # type: ignore[arg-type]
        assert not call.ended
        call.fail(RuntimeError("now"))
        assert _row(registry, "fetch") == (0, 1, 0)

    def test_the_clock_starts_when_the_call_is_made(self, registry: ToolRegistry) -> None:
        call = registry.measure("fetch")
        threading.Event().wait(0.02)
        with call:
            pass
        assert registry.metrics()["fetch"]["last_latency_ms"] >= 20

    def test_the_end_may_come_from_another_thread(self, registry: ToolRegistry) -> None:
        calls = [registry.measure("fetch") for _ in range(100)]
        enders = [threading.Thread(target=call.succeed) for call in calls]
        for thread in enders:
            thread.start()
        for thread in enders:
            thread.join()
        assert _row(registry, "fetch") == (100, 0, 0)

    @pytest.mark.parametrize("how", ["succeed", "fail", "block"])
    def test_of_ends_racing_in_several_threads_exactly_one_counts(
        self, registry: ToolRegistry, how: str
    ) -> None:
        calls = [registry.measure("fetch") for _ in range(200)]
        start = threading.Barrier(4)
        refused: list[int] = []

        def end_them_all() -> None:
            start.wait()
            for call in calls:
                try:
                    if how == "block":
                        with call:  # a block whose call has ended ends nothing
                            pass
                    else:
                        _end(call, how)
                except RuntimeError:
                    refused.append(1)

        racers = [threading.Thread(target=end_them_all) for _ in range(4)]
        for thread in racers:
            thread.start()
        for thread in racers:
            thread.join()
        assert sum(_row(registry, "fetch")[:2]) == 200
        assert _row(registry, "fetch")[2] == 0
        if how != "block":
            assert len(refused) == 3 * 200
        assert all(call.ended for call in calls)

    def test_a_reset_before_the_end_leaves_the_new_counters_alone(
        self, registry: ToolRegistry
    ) -> None:
        call = registry.measure("fetch")
        registry.reset_metrics()
        registry.measure("fetch").succeed()
        ender = threading.Thread(target=call.succeed)
        ender.start()
        ender.join()
        call_in_same_thread = registry.measure("other")
        registry.reset_metrics()
        call_in_same_thread.fail(OSError())
        assert registry.metrics() == {}


def _end(call: MeasuredCall, how: str) -> None:
    if how == "succeed":
        call.succeed(None)
    else:
        call.fail(RuntimeError("failed"))


class TestNames:
    def test_an_unregistered_name_is_counted_with_empty_metadata(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(Tool(name="mine", fn=lambda: 1, metadata={"owner": "me"}))
        with telemetry.capture() as events:
            registry.measure("theirs").succeed()
            registry.measure("mine").succeed()
        metadata = [event.metadata["metadata"] for event in events]
        assert metadata == [{}, {}, {"owner": "me"}, {"owner": "me"}]
        assert set(registry.metrics()) == {"theirs", "mine"}

    @pytest.mark.parametrize("name", [None, 3, ("a",)])
    def test_a_name_that_is_not_a_string_is_refused_before_counting(
        self, registry: ToolRegistry, name: Any
    ) -> None:
        with pytest.raises(TypeError):
            registry.measure(name)
        assert registry.metrics() == {}

    def test_a_context_that_is_not_a_mapping_is_refused_before_counting(
        self, registry: ToolRegistry
    ) -> None:
        with pytest.raises(TypeError):
            registry.measure("fetch", None, ["not", "a", "mapping"])  # type: ignore[arg-type]
        assert registry.metrics() == {}

    def test_module_level_measure_acts_on_the_default_registry(self) -> None:
        codex_tools.reset_metrics()
        try:
            with codex_tools.measure("elsewhere", {"a": 1}) as call:
                call.output = 1
            assert codex_tools.metrics()["elsewhere"]["success"] == 1
        finally:
            codex_tools.reset_metrics()

    def test_a_start_handler_interrupt_ends_the_call_as_a_failure(
        self, registry: ToolRegistry
    ) -> None:
        def interrupt(*_: Any) -> None:
            raise KeyboardInterrupt

        telemetry.attach("interrupts", telemetry.TOOL_START, interrupt)
        with pytest.raises(KeyboardInterrupt):
            registry.measure("fetch")
        telemetry.detach("interrupts")
        assert _row(registry, "fetch") == (0, 1, 0)


class TestConcurrency:
    def test_counts_are_exact_and_the_invariant_holds_under_threads(
        self, registry: ToolRegistry, tiny_switch_interval: None
    ) -> None:
        per_thread, threads = 2_000, 8

        def work(n: int) -> None:
            for i in range(per_thread):
                call = registry.measure("shared", None, {"attempt": 1 + i % 2})
                if (i + n) % 3:
                    call.succeed(i)
                else:
                    call.fail(ValueError(i))

        workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        snapshots = watched(lambda: registry.metrics().get("shared", {}), *workers)
        row = registry.metrics()["shared"]
        assert row["success"] + row["failure"] == per_thread * threads
        assert row["in_flight"] == 0
        assert row["retries"] == per_thread * threads // 2
        for snapshot in snapshots:
            if snapshot:
                assert 0 <= snapshot["in_flight"] <= threads

    async def test_concurrent_async_blocks_count_each_call_once(
        self, registry: ToolRegistry
    ) -> None:
        async def one(i: int) -> None:
            async with registry.measure("shared", {"i": i}) as call:
                await asyncio.sleep(0)
                if i % 4 == 0:
                    raise ValueError(i)
                call.output = i

        results = await asyncio.gather(*(one(i) for i in range(1_000)), return_exceptions=True)
        assert sum(isinstance(result, ValueError) for result in results) == 250
        assert _row(registry, "shared") == (750, 250, 0)


class TestRunningTool:
    """The marker adapters read so a registry tool run through a framework is counted once."""

    async def test_it_names_the_registry_tool_running_in_this_context(
        self, registry: ToolRegistry
    ) -> None:
        track_running()
        seen: list[Any] = []

        @tool
        def sync_tool() -> None:
            seen.append(running_tool())

        @tool
        async def async_tool() -> None:
            seen.append(running_tool())
            await asyncio.to_thread(lambda: seen.append(running_tool()))

        @tool(timeout=5)
        def threaded_tool() -> None:
            seen.append(running_tool())

        for each in (sync_tool, async_tool, threaded_tool):
            registry.register(each)
        registry.invoke("sync_tool")
        await registry.ainvoke("sync_tool")
        await registry.ainvoke("async_tool")
        registry.invoke("threaded_tool")
        assert seen == [sync_tool, sync_tool, async_tool, async_tool, threaded_tool]
        assert running_tool() is None


class TestAnyOrderOfEnds:
    """Whatever a framework does with its calls (ends them in any order, twice, inside
    and outside blocks), each call ends once and the counts follow."""

    @given(
        st.lists(
            st.tuples(st.sampled_from(["succeed", "fail", "block-ok", "block-raise"]),
                      st.integers(0, 7), st.booleans()),
            max_size=60,
        )
    )  # fmt: skip
    @settings(max_examples=60, deadline=None)
    def test_each_call_ends_once_and_the_invariant_holds(
        self, script: list[tuple[str, int, bool]]
    ) -> None:
        registry = ToolRegistry()
        calls = [registry.measure(f"tool-{n % 3}", {"n": n}) for n in range(8)]
        ended: dict[int, bool] = {}
        for how, index, twice in script:
            call = calls[index]
            for _ in range(2 if twice else 1):
                if how.startswith("block"):
                    with contextlib.suppress(KeyError), call:
                        if how == "block-raise":
                            raise KeyError(index)
                    ended.setdefault(index, how == "block-ok")
                    continue
                try:
                    if how == "succeed":
                        call.succeed(index)
                    else:
                        call.fail(ValueError(index))
                except RuntimeError:
                    assert index in ended
                else:
                    assert index not in ended
                    ended[index] = how == "succeed"
        snapshot = registry.metrics()
        success = sum(row["success"] for row in snapshot.values())
        failure = sum(row["failure"] for row in snapshot.values())
        in_flight = sum(row["in_flight"] for row in snapshot.values())
        assert (success, failure) == (sum(ended.values()), len(ended) - sum(ended.values()))
        assert in_flight == 8 - len(ended)
