from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import codex_tools
from codex_tools import (
    RetryPolicy,
    Tool,
    ToolAlreadyRegisteredError,
    ToolArgumentsError,
    ToolContext,
    ToolDisabledError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolRegistry,
    ToolTimeoutError,
    telemetry,
    tool,
)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


class TestRegistration:
    def test_register_lookup_and_deregister_by_handle(self, registry: ToolRegistry) -> None:
        handle = registry.register(add)
        assert registry.lookup("add") is add
        assert registry.tools() == [add]
        registry.deregister(handle)
        with pytest.raises(ToolNotFoundError):
            registry.lookup("add")

    def test_deregister_by_name_and_by_tool(self, registry: ToolRegistry) -> None:
        registry.register(add)
        registry.deregister("add")
        registry.register(add)
        registry.deregister(add)
        assert registry.tools() == []

    def test_a_stale_handle_does_not_remove_a_newer_registration(
        self, registry: ToolRegistry
    ) -> None:
        old = registry.register(add)
        registry.register(lambda a, b: a - b, name="add", replace=True)
        with pytest.raises(ToolNotFoundError):
            registry.deregister(old)
        assert registry.invoke("add", {"a": 5, "b": 2}) == 3

    def test_duplicate_names_are_refused_unless_replacing(self, registry: ToolRegistry) -> None:
        registry.register(add)
        with pytest.raises(ToolAlreadyRegisteredError) as raised:
            registry.register(add)
        assert raised.value.tool == "add"

    def test_plain_functions_are_registered_with_overrides(self, registry: ToolRegistry) -> None:
        def mul(a: int, b: int) -> int:
            """Multiply."""
            return a * b

        handle = registry.register(mul, name="times", description="Multiply two ints.")
        assert handle.name == "times"
        assert registry.lookup("times").description == "Multiply two ints."
        renamed = registry.register(add, name="plus")
        assert renamed.tool.name == "plus"
        assert registry.invoke("plus", {"a": 1, "b": 1}) == 2

    def test_registries_are_isolated(self) -> None:
        first, second = ToolRegistry(), ToolRegistry()
        first.register(add)
        first.invoke("add", {"a": 1, "b": 2})
        with pytest.raises(ToolNotFoundError):
            second.invoke("add", {"a": 1, "b": 2})
        assert second.metrics() == {}
        assert first.metrics()["add"]["success"] == 1

    def test_module_level_functions_use_the_default_registry(self) -> None:
        handle = codex_tools.register(add)
        try:
            codex_tools.reset_metrics()
            assert codex_tools.lookup("add") is add
            assert codex_tools.invoke("add", {"a": 1, "b": 2}, {"thread_id": "t1"}) == 3
            assert asyncio.run(codex_tools.ainvoke("add", {"a": 1, "b": 2})) == 3
            assert codex_tools.metrics()["add"]["success"] == 2
            assert add in codex_tools.tools()
            assert codex_tools.default_registry().lookup("add") is add
        finally:
            codex_tools.deregister(handle)
            codex_tools.reset_metrics()


class TestArguments:
    def test_arguments_may_be_a_json_string(self, registry: ToolRegistry) -> None:
        registry.register(add)
        assert registry.invoke("add", '{"a": 1, "b": 2}') == 3
        assert registry.invoke("add", b'{"a": 1, "b": 2}') == 3

    @pytest.mark.parametrize(
        "args",
        [
            '{"a": 1,',
            "[1, 2]",
            "null",
            [1, 2],
            42,
            {"a": "one", "b": 2},
            {"a": 1},
            {"a": 1, "b": 2, "c": 3},
        ],
    )
    def test_bad_arguments_are_an_arguments_error_and_a_counted_failure(
        self, registry: ToolRegistry, args: Any
    ) -> None:
        registry.register(add)
        with pytest.raises(ToolArgumentsError) as raised:
            registry.invoke("add", args)
        assert raised.value.tool == "add"
        snapshot = registry.metrics()["add"]
        assert (snapshot["success"], snapshot["failure"], snapshot["in_flight"]) == (0, 1, 0)
        assert snapshot["last_error"]["type"] == "ToolArgumentsError"

    def test_schema_errors_say_which_argument_is_wrong(self, registry: ToolRegistry) -> None:
        registry.register(add)
        with pytest.raises(
            ToolArgumentsError, match="a: Input should be a valid integer"
        ) as raised:
            registry.invoke("add", {"a": "x", "b": 1})
        assert raised.value.errors[0]["loc"] == ("a",)

    def test_lax_coercion_follows_pydantic(self, registry: ToolRegistry) -> None:
        registry.register(add)
        assert registry.invoke("add", {"a": "2", "b": 3.0}) == 5

    def test_no_arguments_means_an_empty_object(self, registry: ToolRegistry) -> None:
        registry.register(lambda: "pong", name="ping")
        assert registry.invoke("ping") == "pong"
        assert registry.invoke("ping", "{}") == "pong"


class TestFailures:
    def test_a_raising_tool_is_an_execution_error_with_the_original_as_cause(
        self, registry: ToolRegistry
    ) -> None:
        def boom() -> None:
            raise ConnectionError("upstream reset")

        registry.register(boom)
        with pytest.raises(ToolExecutionError, match="ConnectionError: upstream reset") as raised:
            registry.invoke("boom")
        assert isinstance(raised.value.__cause__, ConnectionError)
        assert raised.value.tool == "boom"
        assert registry.metrics()["boom"]["last_error"] == {
            "type": "ConnectionError",
            "message": "upstream reset",
        }

    def test_unknown_and_disabled_tools_create_no_metrics_entry(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(Tool(name="off", fn=lambda: 1, enabled=False))
        with pytest.raises(ToolNotFoundError):
            registry.invoke("nope")
        with pytest.raises(ToolNotFoundError):
            registry.invoke(["not", "hashable"])  # type: ignore[arg-type]
        with pytest.raises(ToolDisabledError):
            registry.invoke("off")
        assert registry.metrics() == {}

    def test_enabled_may_depend_on_the_context(self, registry: ToolRegistry) -> None:
        registry.register(
            Tool(name="admin", fn=lambda: "ok", enabled=lambda ctx: ctx.get("user") == "root")
        )
        assert registry.invoke("admin", {}, {"user": "root"}) == "ok"
        with pytest.raises(ToolDisabledError):
            registry.invoke("admin", {}, {"user": "guest"})

    def test_a_raising_enabled_check_disables_the_tool(self, registry: ToolRegistry) -> None:
        def broken(ctx: ToolContext) -> bool:
            raise KeyError("user")

        registry.register(Tool(name="t", fn=lambda: 1, enabled=broken))
        with pytest.raises(ToolDisabledError) as raised:
            registry.invoke("t")
        assert isinstance(raised.value.__cause__, KeyError)
        assert registry.metrics() == {}

    def test_on_error_may_turn_a_failure_into_an_output(self, registry: ToolRegistry) -> None:
        seen: list[tuple[str, str]] = []

        def fallback(error: BaseException, ctx: ToolContext) -> str:
            seen.append((type(error).__name__, ctx.tool))
            return "cached answer"

        def flaky() -> str:
            raise ConnectionError("down")

        registry.register(Tool(name="flaky", fn=flaky, on_error=fallback))
        assert registry.invoke("flaky") == "cached answer"
        assert seen == [("ConnectionError", "flaky")]
        snapshot = registry.metrics()["flaky"]
        assert (snapshot["success"], snapshot["failure"]) == (1, 0)

    def test_on_error_may_re_raise(self, registry: ToolRegistry) -> None:
        def reraise(error: BaseException, ctx: ToolContext) -> Any:
            raise ValueError("translated") from error

        def flaky() -> str:
            raise ConnectionError("down")

        registry.register(Tool(name="flaky", fn=flaky, on_error=reraise))
        with pytest.raises(ToolExecutionError, match="ValueError: translated") as raised:
            registry.invoke("flaky")
        assert isinstance(raised.value.__cause__, ValueError)
        assert registry.metrics()["flaky"]["failure"] == 1

    @pytest.mark.parametrize("interrupt", [KeyboardInterrupt, asyncio.CancelledError])
    def test_interrupts_are_counted_and_re_raised_unchanged(
        self, registry: ToolRegistry, interrupt: type[BaseException]
    ) -> None:
        instance = interrupt()

        def stop() -> None:
            raise instance

        registry.register(stop)
        with telemetry.capture() as events, pytest.raises(interrupt) as raised:
            registry.invoke("stop")
        assert raised.value is instance
        snapshot = registry.metrics()["stop"]
        assert (snapshot["failure"], snapshot["in_flight"]) == (1, 0)
        assert snapshot["last_error"]["type"] == interrupt.__name__
        assert [event.event[-1] for event in events] == ["start", "failure"]
        assert events[1].metadata["error"] is instance

    async def test_cancelling_an_async_call_counts_a_failure_and_propagates(
        self, registry: ToolRegistry
    ) -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(60)

        registry.register(hang)
        task = asyncio.create_task(registry.ainvoke("hang"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        snapshot = registry.metrics()["hang"]
        assert (snapshot["failure"], snapshot["in_flight"]) == (1, 0)
        assert snapshot["last_error"]["type"] == "CancelledError"

    def test_odd_outputs_are_returned_as_they_are(self, registry: ToolRegistry) -> None:
        marker = object()
        registry.register(lambda: marker, name="odd")
        registry.register(lambda: None, name="nothing")
        assert registry.invoke("odd") is marker
        assert registry.invoke("nothing") is None
        json.dumps(registry.metrics())


class TestTimeouts:
    def test_an_async_tool_is_cancelled_at_its_deadline(self, registry: ToolRegistry) -> None:
        cancelled = threading.Event()

        async def hang() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        registry.register(Tool(name="hang", fn=hang, timeout=0.05))
        with pytest.raises(ToolTimeoutError) as raised:
            registry.invoke("hang")
        assert cancelled.is_set()
        assert isinstance(raised.value.__cause__, TimeoutError)
        assert registry.metrics()["hang"]["last_error"]["type"] == "TimeoutError"

    async def test_ainvoke_times_out_async_and_sync_tools(self, registry: ToolRegistry) -> None:
        release = threading.Event()

        async def hang() -> None:
            await asyncio.sleep(60)

        def block() -> None:
            release.wait(10)

        registry.register(Tool(name="hang", fn=hang, timeout=0.05))
        registry.register(Tool(name="block", fn=block, timeout=0.05))
        for name in ("hang", "block"):
            with pytest.raises(ToolTimeoutError):
                await registry.ainvoke(name)
        release.set()
        snapshot = registry.metrics()
        assert snapshot["hang"]["failure"] == snapshot["block"]["failure"] == 1

    def test_a_sync_tool_timeout_frees_the_caller_and_the_thread_runs_on(
        self, registry: ToolRegistry
    ) -> None:
        release, finished = threading.Event(), threading.Event()

        def block() -> None:
            release.wait(10)
            finished.set()

        registry.register(Tool(name="block", fn=block, timeout=0.05))
        with pytest.raises(ToolTimeoutError):
            registry.invoke("block")
        assert not finished.is_set()
        release.set()
        assert finished.wait(5)
        assert registry.metrics()["block"]["failure"] == 1

    def test_a_tool_raising_timeout_error_itself_is_not_a_deadline(
        self, registry: ToolRegistry
    ) -> None:
        def own() -> None:
            raise TimeoutError("the database said so")

        registry.register(Tool(name="own", fn=own, timeout=5))
        with pytest.raises(ToolExecutionError) as raised:
            registry.invoke("own")
        assert not isinstance(raised.value, ToolTimeoutError)


class TestSyncAndAsync:
    def test_invoke_runs_async_tools_to_completion(self, registry: ToolRegistry) -> None:
        async def double(x: int) -> int:
            await asyncio.sleep(0)
            return 2 * x

        registry.register(double)
        assert registry.invoke("double", {"x": 21}) == 42

    async def test_invoke_of_an_async_tool_works_inside_a_running_loop(
        self, registry: ToolRegistry
    ) -> None:
        async def double(x: int) -> int:
            return 2 * x

        registry.register(double)
        assert registry.invoke("double", {"x": 4}) == 8

    async def test_ainvoke_runs_sync_tools_off_the_loop_unless_quick(
        self, registry: ToolRegistry
    ) -> None:
        def where() -> int:
            return threading.get_ident()

        loop_thread = threading.get_ident()
        registry.register(Tool(name="where", fn=where))
        registry.register(Tool(name="quick_where", fn=where, quick=True))
        assert await registry.ainvoke("where") != loop_thread
        assert await registry.ainvoke("quick_where") == loop_thread

    async def test_worker_threads_see_the_callers_context_variables(
        self, registry: ToolRegistry
    ) -> None:
        import contextvars

        request = contextvars.ContextVar("request", default="none")
        request.set("r-42")

        def read() -> str:
            return request.get()

        registry.register(read)
        assert await registry.ainvoke("read") == "r-42"


class TestRetryPolicy:
    def test_retried_attempts_are_tagged_and_each_is_counted(self, registry: ToolRegistry) -> None:
        calls: list[tuple[int, bool]] = []

        @tool(retry=RetryPolicy(max_attempts=3, backoff=None))
        def flaky(ctx: ToolContext) -> str:
            calls.append((ctx.attempt, ctx.retry))
            if len(calls) < 3:
                raise ConnectionError("try again")
            return "ok"

        registry.register(flaky)
        with telemetry.capture() as events:
            assert registry.invoke("flaky") == "ok"
        assert calls == [(1, False), (2, True), (3, True)]
        ends = [(e.event[-1], e.metadata["attempt"], e.metadata["retry"]) for e in events[1::2]]
        assert ends == [("failure", 1, False), ("failure", 2, True), ("success", 3, True)]
        snapshot = registry.metrics()["flaky"]
        assert (snapshot["success"], snapshot["failure"], snapshot["retries"]) == (1, 2, 2)

    async def test_a_policy_that_gives_up_raises_the_last_failure(
        self, registry: ToolRegistry
    ) -> None:
        waits: list[int] = []

        def backoff(attempt: int) -> float:
            waits.append(attempt)
            return 0.001

        @tool(retry=RetryPolicy(max_attempts=2, backoff=backoff))
        async def down() -> None:
            raise ConnectionError("still down")

        registry.register(down)
        with pytest.raises(ToolExecutionError, match="still down"):
            await registry.ainvoke("down", {}, {"attempt": 4})
        assert waits == [1]
        snapshot = registry.metrics()["down"]
        assert (snapshot["failure"], snapshot["retries"], snapshot["consecutive_failures"]) == (
            2,
            2,  # the caller's attempt 4 is itself a retry
            2,
        )

    def test_retry_on_selects_which_failures_are_retried(self, registry: ToolRegistry) -> None:
        attempts: list[int] = []

        @tool(retry=RetryPolicy(max_attempts=5, backoff=None, retry_on=ConnectionError))
        def picky() -> None:
            attempts.append(1)
            raise ValueError("not transient")

        @tool(retry=RetryPolicy(max_attempts=5, backoff=None, retry_on=lambda e: "again" in str(e)))
        def by_message() -> None:
            attempts.append(2)
            raise RuntimeError("again" if attempts.count(2) < 2 else "final")

        registry.register(picky)
        registry.register(by_message)
        with pytest.raises(ToolExecutionError):
            registry.invoke("picky")
        with pytest.raises(ToolExecutionError, match="final"):
            registry.invoke("by_message")
        assert attempts == [1, 2, 2]

    def test_argument_errors_are_never_retried(self, registry: ToolRegistry) -> None:
        registry.register(Tool(name="add", fn=add.fn, retry=RetryPolicy(backoff=None)))
        with pytest.raises(ToolArgumentsError):
            registry.invoke("add", {"a": "x", "b": 1})
        assert registry.metrics()["add"]["failure"] == 1

    def test_timeouts_are_retried_as_timeout_errors(self, registry: ToolRegistry) -> None:
        async def hang() -> None:
            await asyncio.sleep(60)

        registry.register(
            Tool(
                name="hang",
                fn=hang,
                timeout=0.01,
                retry=RetryPolicy(max_attempts=2, backoff=None, retry_on=TimeoutError),
            )
        )
        with pytest.raises(ToolTimeoutError):
            registry.invoke("hang")
        assert registry.metrics()["hang"]["failure"] == 2


class TestAttempts:
    """``attempt`` is always an int: 1 unless the caller or a retry says otherwise."""

    @pytest.mark.parametrize(
        ("context", "expected"),
        [
            (None, (1, False)),
            ({}, (1, False)),
            ({"attempt": 3}, (3, True)),
            ({"attempt": 3, "retry": False}, (3, False)),
            ({"attempt": "3"}, (1, False)),
            ({"attempt": True}, (1, False)),
            ({"attempt": 0}, (1, False)),
            ({"attempt": None}, (1, False)),
        ],
    )
    def test_the_first_try_carries_the_callers_attempt_or_1(
        self, registry: ToolRegistry, context: dict[str, Any] | None, expected: tuple[int, bool]
    ) -> None:
        @tool
        def seen(ctx: ToolContext) -> tuple[int, bool]:
            return ctx.attempt, ctx.retry

        registry.register(seen)
        with telemetry.capture() as events:
            assert registry.invoke("seen", {}, context) == expected
        assert {(e.metadata["attempt"], e.metadata["retry"]) for e in events} == {expected}

    async def test_a_policy_counts_on_from_the_callers_attempt_and_caps_its_own_tries(
        self, registry: ToolRegistry
    ) -> None:
        seen: list[int] = []
        waits: list[int] = []

        @tool(retry=RetryPolicy(max_attempts=3, backoff=waits.append))
        def down(ctx: ToolContext) -> None:
            seen.append(ctx.attempt)
            raise ConnectionError("down")

        registry.register(down)
        with pytest.raises(ToolExecutionError):
            await registry.ainvoke("down", {}, {"attempt": 4})
        with pytest.raises(ToolExecutionError):
            registry.invoke("down")
        assert seen == [4, 5, 6, 1, 2, 3]
        assert waits == [1, 2, 1, 2]  # the backoff is given the policy's own try number


class TestAHostSurvivesItsTools:
    """A tool raising ``SystemExit`` has failed; it never ends the host."""

    @staticmethod
    def exits() -> None:
        raise SystemExit(2)  # what argparse does on bad input

    @staticmethod
    async def aexits() -> None:
        await asyncio.sleep(0)
        raise SystemExit(2)

    @pytest.mark.parametrize(
        "make",
        [
            lambda f, af: Tool(name="t", fn=f),
            lambda f, af: Tool(name="t", fn=f, quick=True),
            lambda f, af: Tool(name="t", fn=f, timeout=5),
            lambda f, af: Tool(name="t", fn=af),
            lambda f, af: Tool(name="t", fn=af, timeout=5),
        ],
        ids=["sync", "quick", "sync-timeout", "async", "async-timeout"],
    )
    async def test_system_exit_is_an_execution_error_counted_as_a_failure(
        self, registry: ToolRegistry, make: Any
    ) -> None:
        registry.register(make(self.exits, self.aexits))
        with pytest.raises(ToolExecutionError, match="SystemExit: 2") as raised:
            await registry.ainvoke("t")
        assert isinstance(raised.value.__cause__, SystemExit)
        with pytest.raises(ToolExecutionError):
            registry.invoke("t")
        with pytest.raises(ToolExecutionError):
            await asyncio.to_thread(registry.invoke, "t")
        row = registry.metrics()["t"]
        assert (row["success"], row["failure"], row["in_flight"]) == (0, 3, 0)
        assert row["last_error"]["type"] == "SystemExit"

    def test_a_policy_may_retry_system_exit_and_on_error_may_handle_it(
        self, registry: ToolRegistry
    ) -> None:
        tries: list[int] = []

        def exits_twice() -> str:
            tries.append(1)
            if len(tries) < 3:
                raise SystemExit(1)
            return "ok"

        retry = RetryPolicy(max_attempts=3, backoff=None, retry_on=SystemExit)
        registry.register(Tool(name="t", fn=exits_twice, retry=retry))
        registry.register(Tool(name="h", fn=self.exits, on_error=lambda e, _: type(e).__name__))
        assert registry.invoke("t") == "ok"
        assert registry.invoke("h") == "SystemExit"
        assert registry.metrics()["t"]["failure"] == 2

    def test_an_on_error_or_enabled_check_raising_system_exit_is_contained(
        self, registry: ToolRegistry
    ) -> None:
        def exit_handler(error: BaseException, _: ToolContext) -> None:
            raise SystemExit(3)

        def exit_check(_: ToolContext) -> bool:
            raise SystemExit(4)

        registry.register(Tool(name="handled", fn=self.exits, on_error=exit_handler))
        registry.register(Tool(name="checked", fn=lambda: 1, enabled=exit_check))
        with pytest.raises(ToolExecutionError, match="SystemExit: 3"):
            registry.invoke("handled")
        with pytest.raises(ToolDisabledError):
            registry.invoke("checked")

    def test_a_process_whose_tool_exits_keeps_running(self) -> None:
        import subprocess
        import sys

        script = (
            "import asyncio, codex_tools as c\n"
            "def t(): raise SystemExit(7)\n"
            "c.register(t)\n"
            "for call in (lambda: c.invoke('t'), lambda: asyncio.run(c.ainvoke('t'))):\n"
            "    try: call()\n"
            "    except c.ToolExecutionError: pass\n"
            "print('still here', c.metrics()['t']['failure'])\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
        )
        assert (done.returncode, done.stdout) == (0, "still here 2\n")


class TestNestedCalls:
    """Only a tool's own arguments are an argument error; a tool calling another with bad
    arguments has failed."""

    def test_an_inner_argument_error_is_the_outer_tools_execution_error(
        self, registry: ToolRegistry
    ) -> None:
        registry.register(add)

        @tool
        def outer() -> int:
            return int(registry.invoke("add", {"a": "not a number", "b": 1}))

        registry.register(outer)
        with pytest.raises(ToolExecutionError) as raised:
            registry.invoke("outer")
        assert isinstance(raised.value.__cause__, ToolArgumentsError)
        assert raised.value.tool == "outer"
        assert registry.metrics()["outer"]["last_error"]["type"] == "ToolArgumentsError"
        with pytest.raises(ToolArgumentsError) as own:
            registry.invoke("outer", {"unexpected": 1})
        assert own.value.tool == "outer"

    async def test_a_policy_retries_it(self, registry: ToolRegistry) -> None:
        registry.register(add)
        sent = iter([{"a": "x", "b": 1}, {"a": 1, "b": 1}])

        @tool(retry=RetryPolicy(max_attempts=2, backoff=None))
        async def outer() -> int:
            return int(await registry.ainvoke("add", next(sent)))

        registry.register(outer)
        assert await registry.ainvoke("outer") == 2
        row = registry.metrics()["outer"]
        assert (row["success"], row["failure"], row["retries"]) == (1, 1, 1)


class TestAPolicyThatBreaks:
    """A retry policy's own bug gives up retrying; the caller gets the tool's failure."""

    @pytest.mark.parametrize(
        "policy",
        [
            RetryPolicy(backoff=None, retry_on=lambda e: 1 / 0 > 0),
            RetryPolicy(backoff=lambda n: float("nan")),
            RetryPolicy(backoff=lambda n: float("inf")),
            RetryPolicy(backoff=lambda n: "soon"),  # type: ignore[arg-type, return-value]
        ],
        ids=["retry_on-raises", "nan", "inf", "not-a-number"],
    )
    async def test_the_tools_failure_is_raised_with_a_note(
        self, registry: ToolRegistry, policy: RetryPolicy
    ) -> None:
        def down() -> None:
            raise ConnectionError("down")

        registry.register(Tool(name="down", fn=down, retry=policy))
        with pytest.raises(ToolExecutionError, match="ConnectionError") as raised:
            registry.invoke("down")
        assert any("not retried" in note for note in raised.value.__notes__)
        with pytest.raises(ToolExecutionError, match="ConnectionError") as raised:
            await registry.ainvoke("down")
        assert any("not retried" in note for note in raised.value.__notes__)
        assert registry.metrics()["down"]["failure"] == 2
