from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from codex_tools import ToolArgumentsError, ToolExecutionError, ToolRegistry, telemetry, tool

EVENT = ("app", "thing", "happened")
Seen = list[tuple[tuple[str, ...], Mapping[str, Any], Mapping[str, Any], Any]]


def recorder(seen: Seen) -> telemetry.Handler:
    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append((event, measurements, metadata, config))

    return handler


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class TestAttachAndDetach:
    def test_attached_handlers_receive_events_with_their_config(self) -> None:
        seen: Seen = []
        telemetry.attach("h1", EVENT, recorder(seen), config={"k": 1})
        telemetry.execute(EVENT, {"n": 1}, {"who": "me"})
        telemetry.execute(("other",), {}, {})
        assert seen == [(EVENT, {"n": 1}, {"who": "me"}, {"k": 1})]

    def test_ids_are_unique_across_all_events(self) -> None:
        telemetry.attach("dup", EVENT, recorder([]))
        with pytest.raises(ValueError, match="dup"):
            telemetry.attach("dup", ("another", "event"), recorder([]))

    def test_detach_says_whether_it_removed_something(self) -> None:
        telemetry.attach_many("many", [EVENT, ("b",)], recorder([]))
        assert telemetry.detach("many") is True
        assert telemetry.detach("many") is False
        assert telemetry.list_handlers() == []

    def test_list_handlers_filters_by_prefix(self) -> None:
        telemetry.attach_many("h", [("a", "b", "c"), ("a", "x"), ("z",)], recorder([]))
        assert {info.event_name for info in telemetry.list_handlers(("a",))} == {
            ("a", "b", "c"),
            ("a", "x"),
        }
        assert len(telemetry.list_handlers()) == 3
        assert telemetry.list_handlers(("a", "b", "c", "d")) == []

    @pytest.mark.parametrize("event", [(), ("ok", 3), "plain"])
    def test_bad_event_names_are_refused(self, event: Any) -> None:
        if event == "plain":
            event = [1]
        with pytest.raises(ValueError, match="event name"):
            telemetry.attach("bad", event, recorder([]))

    def test_a_non_callable_handler_is_refused(self) -> None:
        with pytest.raises(TypeError):
            telemetry.attach("bad", EVENT, "not callable")  # type: ignore[arg-type]

    def test_events_may_be_given_as_lists(self) -> None:
        seen: Seen = []
        telemetry.attach("h", EVENT, recorder(seen))
        telemetry.execute(list(EVENT), {}, {})
        assert len(seen) == 1


class TestFailingHandlers:
    def test_a_raising_handler_is_detached_from_every_event_and_reported(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        reports: Seen = []
        others: Seen = []
        telemetry.attach("reports", telemetry.HANDLER_FAILURE, recorder(reports))

        def broken(*_: Any) -> None:
            raise RuntimeError("handler bug")

        telemetry.attach_many("broken", [EVENT, ("second",)], broken, config="cfg")
        telemetry.attach("other", EVENT, recorder(others))
        with caplog.at_level(logging.ERROR, logger="codex_tools.telemetry"):
            telemetry.execute(EVENT, {}, {})  # the emitter does not see the error
        telemetry.execute(EVENT, {}, {})
        assert [info.id for info in telemetry.list_handlers()] == ["reports", "other"]
        assert len(others) == 2
        ((event, measurements, metadata, _),) = reports
        assert event == ("telemetry", "handler", "failure")
        assert set(measurements) == {"monotonic_time", "system_time"}
        assert set(metadata) == {
            "event_name",
            "handler_id",
            "handler_config",
            "kind",
            "reason",
            "stacktrace",
        }
        assert metadata["event_name"] == EVENT
        assert metadata["handler_id"] == "broken"
        assert metadata["handler_config"] == "cfg"
        assert isinstance(metadata["reason"], RuntimeError)
        assert "handler bug" in metadata["stacktrace"]
        assert "broken" in caplog.text

    def test_a_failing_handler_does_not_break_a_tool_call(self, registry: ToolRegistry) -> None:
        def broken(*_: Any) -> None:
            raise RuntimeError("handler bug")

        telemetry.attach_many("broken", telemetry.TOOL_EVENTS, broken)
        registry.register(add)
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
        assert registry.metrics()["add"]["success"] == 1

    def test_a_handler_that_invokes_a_tool_does_not_deadlock(self, registry: ToolRegistry) -> None:
        registry.register(add)
        registry.register(lambda: "inner", name="inner")
        inner_results: list[Any] = []

        def reentrant(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
            if metadata["tool"] == "add":
                inner_results.append(registry.invoke("inner"))

        telemetry.attach("reentrant", telemetry.TOOL_SUCCESS, reentrant)
        done = threading.Event()

        def run() -> None:
            registry.invoke("add", {"a": 1, "b": 2})
            done.set()

        threading.Thread(target=run, daemon=True).start()
        assert done.wait(10)
        assert inner_results == ["inner"]
        assert registry.metrics()["inner"]["success"] == 1


class TestToolEvents:
    def test_start_and_success_carry_the_contract_keys(self, registry: ToolRegistry) -> None:
        registry.register(add)
        context = {"thread_id": "t1", "turn_id": "u1", "call_id": "c1", "attempt": 2}
        with telemetry.capture() as events:
            registry.invoke("add", {"a": 1, "b": 2}, context)
        start, end = events
        assert start.event == ("codex", "tool", "start")
        assert end.event == ("codex", "tool", "success")
        assert set(start.measurements) == {"system_time", "monotonic_time"}
        assert {"duration", "duration_ms"} <= set(end.measurements)
        assert isinstance(end.measurements["duration"], int)
        assert end.measurements["duration_ms"] == end.measurements["duration"] / 1e6
        assert start.metadata == {
            "tool": "add",
            "metadata": {},
            "arguments": {"a": 1, "b": 2},
            "retry": True,
            "attempt": 2,
            "call_id": "c1",
            "thread_id": "t1",
            "turn_id": "u1",
            "originator": "sdk",
            "span_token": start.metadata["span_token"],
        }
        assert end.metadata == {**start.metadata, "output": 3, "result": "ok"}

    def test_the_originator_is_the_sdk_unless_the_caller_says(self, registry: ToolRegistry) -> None:
        registry.register(add)
        with telemetry.capture(telemetry.TOOL_START) as events:
            registry.invoke("add", {"a": 1, "b": 2})
            registry.invoke("add", {"a": 1, "b": 2}, {"originator": "mcp"})
        assert [e.metadata["originator"] for e in events] == ["sdk", "mcp"]

    def test_failures_carry_the_error_and_each_call_its_own_token(
        self, registry: ToolRegistry
    ) -> None:
        def boom() -> None:
            raise KeyError("k")

        registry.register(boom)
        registry.register(add)
        with telemetry.capture() as events:
            with pytest.raises(ToolExecutionError):
                registry.invoke("boom")
            with pytest.raises(ToolArgumentsError):
                registry.invoke("add", {"a": "x"})
        assert [e.event[-1] for e in events] == ["start", "failure", "start", "failure"]
        assert isinstance(events[1].metadata["error"], KeyError)
        assert events[1].metadata["result"] == "error"
        assert isinstance(events[3].metadata["error"], ToolArgumentsError)
        assert events[0].metadata["span_token"] == events[1].metadata["span_token"]
        assert events[2].metadata["span_token"] != events[0].metadata["span_token"]

    async def test_async_events_are_emitted_in_the_invoking_task(
        self, registry: ToolRegistry
    ) -> None:
        tasks: list[asyncio.Task[Any] | None] = []

        def where(*_: Any) -> None:
            tasks.append(asyncio.current_task())

        async def nap() -> None:
            await asyncio.sleep(0)

        registry.register(nap)
        telemetry.attach_many("where", telemetry.TOOL_EVENTS, where)
        task = asyncio.create_task(registry.ainvoke("nap"))
        await task
        assert tasks == [task, task]

    def test_nothing_is_built_when_nobody_listens(self, registry: ToolRegistry) -> None:
        read: list[str] = []

        class Spy(dict[str, Any]):
            def get(self, key: str, default: Any = None) -> Any:
                read.append(key)
                return super().get(key, default)

        registry.register(add)
        registry.invoke("add", {"a": 1, "b": 2}, Spy(attempt=1, call_id="c"))
        assert not {"call_id", "thread_id", "turn_id"} & set(read)  # no event metadata built
        with telemetry.capture():
            registry.invoke("add", {"a": 1, "b": 2}, Spy(attempt=1, call_id="c"))
        assert {"call_id", "thread_id", "turn_id"} <= set(read)


class TestSpan:
    def test_span_emits_start_then_stop_with_duration(self) -> None:
        seen: Seen = []
        telemetry.attach_many("s", [("job", "start"), ("job", "stop")], recorder(seen))
        with telemetry.span(("job",), {"id": 7}) as span:
            span.metadata["rows"] = 3
        (start, stop) = seen
        assert start[0] == ("job", "start")
        assert stop[0] == ("job", "stop")
        assert start[2]["id"] == 7
        assert stop[2]["rows"] == 3
        assert stop[1]["duration"] >= 0
        assert start[2]["telemetry_span_context"] is stop[2]["telemetry_span_context"]

    async def test_async_span_reports_the_exception_and_re_raises_it(self) -> None:
        seen: Seen = []
        telemetry.attach("s", ("job", "exception"), recorder(seen))
        error = ValueError("bad row")
        with pytest.raises(ValueError, match="bad row") as raised:
            async with telemetry.span(("job",), {}):
                raise error
        assert raised.value is error
        ((_event, measurements, metadata, _),) = seen
        assert metadata["kind"] == "error"
        assert metadata["reason"] is error
        assert "bad row" in metadata["stacktrace"]
        assert "duration" in measurements


def test_default_logger_logs_one_line_per_call(
    registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    registry.register(add)
    handler_id = telemetry.attach_default_logger(logging.INFO)
    assert telemetry.attach_default_logger(logging.WARNING) == handler_id  # replaces
    with caplog.at_level(logging.INFO, logger="codex_tools"):
        registry.invoke("add", {"a": 1, "b": 2})
        with pytest.raises(ToolArgumentsError):
            registry.invoke("add", {})
    lines = [r.getMessage() for r in caplog.records if r.name == "codex_tools"]
    assert len(lines) == 2
    assert lines[0].startswith("tool=add result=ok")
    assert "result=error" in lines[1]
    assert "error=ToolArgumentsError" in lines[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "codex_tools")
    telemetry.detach(handler_id)


def test_a_handler_cannot_change_what_later_handlers_and_the_end_event_see(
    registry: ToolRegistry,
) -> None:
    registry.register(add)

    def meddle(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        metadata["span_token"] = "stolen"

    telemetry.attach("meddle", telemetry.TOOL_START, meddle)
    with telemetry.capture() as events:
        assert registry.invoke("add", {"a": 1, "b": 2}) == 3
    assert telemetry.list_handlers(("codex",)) == []  # detached for raising
    start, end = (e for e in events if e.event[:2] == ("codex", "tool"))
    assert start.metadata["span_token"] == end.metadata["span_token"] != "stolen"
    assert registry.metrics()["add"]["success"] == 1
