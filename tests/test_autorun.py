"""The auto-run loop: turns, tool calls through the registry, failures back to the model."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from typing import Any

import pytest

import codex_tools.autorun
from codex_tools import RetryPolicy, ToolContext, ToolRegistry, telemetry, tool
from codex_tools.autorun import (
    AutoRunResult,
    Conversation,
    MaxAttemptsReached,
    ScriptedModel,
    ToolCall,
    Turn,
    arun_auto,
    run_auto,
)

START, SUCCESS, FAILURE = telemetry.TOOL_EVENTS


def call(name: str, arguments: Any = None, call_id: str = "c1") -> dict[str, Any]:
    return {
        "type": "tool.call.required",
        "call_id": call_id,
        "tool_name": name,
        "arguments": {} if arguments is None else arguments,
    }


def pending(**usage: int) -> dict[str, Any]:
    return {"type": "turn.completed", "status": "pending", "usage": usage}


def done(text: str, **usage: int) -> dict[str, Any]:
    return {"type": "turn.completed", "final_response": text, "usage": usage}


def flaky_registry(failures: int, retry: RetryPolicy | None = None) -> ToolRegistry:
    """A registry whose ``fetch`` fails its first ``failures`` calls."""
    registry = ToolRegistry()
    calls = 0

    @tool(retry=retry)
    def fetch(url: str) -> str:
        nonlocal calls
        calls += 1
        if calls <= failures:
            raise ConnectionError(f"reset while fetching {url}")
        return f"<html>{url}</html>"

    registry.register(fetch)
    return registry


def test_public_names_are_pinned() -> None:
    assert codex_tools.autorun.__all__ == [
        "AutoRunResult",
        "Conversation",
        "MaxAttemptsReached",
        "Model",
        "OpenAIChatModel",
        "ScriptedModel",
        "ToolCall",
        "ToolFailure",
        "ToolOutput",
        "ToolResult",
        "Turn",
        "TurnRecord",
        "Usage",
        "arun_auto",
        "run_auto",
    ]


class TestRetriedCall:
    """The seed scenario: turn 1's call fails, the model retries it in turn 2, it works."""

    def script(self) -> ScriptedModel:
        thread = {"type": "thread.started", "thread_id": "thread_seed"}
        return ScriptedModel(
            [
                [thread, call("fetch", {"url": "a"}), pending()],
                [call("fetch", {"url": "a"}, call_id="c2"), pending()],
                [done("fetched a")],
            ]
        )

    def test_metrics_count_a_failure_then_a_success_and_one_retry(self) -> None:
        registry = flaky_registry(failures=1)
        result = run_auto(self.script(), "fetch a", registry=registry, max_attempts=3)
        assert result.final_response == "fetched a"
        assert result.attempts == 3
        stats = registry.metrics()["fetch"]
        assert (stats["failure"], stats["success"], stats["retries"]) == (1, 1, 1)
        assert stats["last_error"]["type"] == "ConnectionError"

    def test_telemetry_tags_the_second_call_as_retry_attempt_2(self) -> None:
        with telemetry.capture(START) as starts:
            run_auto(self.script(), "fetch a", registry=flaky_registry(failures=1))
        keys = ("call_id", "turn_id", "attempt", "retry")
        tags = [tuple(e.metadata[k] for k in keys) for e in starts]
        assert tags == [("c1", "turn_1", 1, False), ("c2", "turn_2", 2, True)]
        assert {e.metadata["thread_id"] for e in starts} == {"thread_seed"}

    def test_the_failure_is_shown_to_the_model_in_the_next_turn(self) -> None:
        model = self.script()
        result = run_auto(model, "fetch a", registry=flaky_registry(failures=1))
        first, second = model.conversations[1].turns[0].results, result.tool_outputs
        assert len(first) == 1
        failure = first[0]
        assert failure == result.tool_failures[0]
        assert (failure.call_id, failure.tool, failure.error_type) == (
            "c1",
            "fetch",
            "ToolExecutionError",
        )
        assert "ConnectionError: reset while fetching a" in failure.message
        assert '"type": "ToolExecutionError"' in failure.content
        assert [(o.call_id, o.output, o.turn, o.attempt) for o in second] == [
            ("c2", "<html>a</html>", 2, 2)
        ]
        assert result.thread_id == "thread_seed"


class TestAttemptNumbering:
    """``attempt`` counts a tool's failed calls since its last success, not turns."""

    def test_only_a_call_after_a_failure_of_the_same_tool_is_a_retry(self) -> None:
        registry = ToolRegistry()
        seen: dict[str, tuple[int, int, bool]] = {}
        failures_left = 3  # f1 fails; f2 and f3 (one turn) fail; f4 works

        @tool
        def flaky(ctx: ToolContext) -> str:
            nonlocal failures_left
            seen[ctx["call_id"]] = (ctx["turn"], ctx.attempt, ctx.retry)
            if failures_left:
                failures_left -= 1
                raise ConnectionError("reset")
            return "ok"

        @tool
        def steady(ctx: ToolContext) -> str:
            seen[ctx["call_id"]] = (ctx["turn"], ctx.attempt, ctx.retry)
            return "ok"

        registry.register(flaky)
        registry.register(steady)
        model = ScriptedModel(
            [
                [call("flaky", call_id="f1"), pending()],
                [call("flaky", call_id="f2"), call("flaky", call_id="f3"), pending()],
                [call("flaky", call_id="f4"), call("steady", call_id="s1"), pending()],
                [call("flaky", call_id="f5"), call("teleport", call_id="t1"), pending()],
                [call("teleport", call_id="t2"), done("done")],
            ]
        )
        with telemetry.capture(START) as starts:
            result = run_auto(model, "go", registry=registry, max_attempts=5)
        assert seen == {
            "f1": (1, 1, False),
            "f2": (2, 2, True),  # one failure before: a retry
            "f3": (2, 2, True),  # same tool, same turn: the same number
            "f4": (3, 4, True),  # three failures before
            "s1": (3, 1, False),  # first called in turn 3: not a retry
            "f5": (4, 1, False),  # f4 succeeded
        }
        assert {e.metadata["call_id"]: e.metadata["attempt"] for e in starts} == {
            call_id: attempt for call_id, (_, attempt, _) in seen.items()
        }
        assert registry.metrics()["flaky"]["retries"] == 3
        assert registry.metrics()["steady"]["retries"] == 0
        # An unknown tool runs nowhere, but the model asking again is still its retry.
        assert [(f.call_id, f.turn, f.attempt) for f in result.tool_failures[-2:]] == [
            ("t1", 4, 1),
            ("t2", 5, 2),
        ]

    def test_counts_are_per_run(self) -> None:
        registry = flaky_registry(failures=1)
        script = [[call("fetch", {"url": "a"}), done("tried")]]
        first = run_auto(ScriptedModel(script), "go", registry=registry)
        second = run_auto(ScriptedModel(script), "go", registry=registry)
        assert first.tool_failures[0].attempt == 1
        assert second.tool_outputs[0].attempt == 1


def test_instructions_reach_the_model_as_the_system_prompt() -> None:
    model = ScriptedModel([[done("yes")]])
    run_auto(model, "hi", registry=ToolRegistry(), instructions="Answer in one word.")
    assert model.conversations[0].instructions == "Answer in one word."
    assert model.conversations[0].turn == 1
    with pytest.raises(TypeError, match="instructions must be a string"):
        run_auto(model, "hi", registry=ToolRegistry(), instructions=3)  # type: ignore[arg-type]


def test_no_final_response_within_max_attempts_raises_with_the_partial_result() -> None:
    registry = flaky_registry(failures=0)
    model = ScriptedModel(
        [[call("fetch", {"url": f"u{n}"}), pending(input_tokens=5)] for n in range(3)]
    )
    with pytest.raises(MaxAttemptsReached, match="within 2 turns") as caught:
        run_auto(model, "loop forever", registry=registry, max_attempts=2)
    partial = caught.value.result
    assert isinstance(caught.value, RuntimeError)
    assert (partial.final_response, partial.attempts) == (None, 2)
    assert [o.output for o in partial.tool_outputs] == ["<html>u0</html>", "<html>u1</html>"]
    assert partial.usage == {"input_tokens": 10}
    assert registry.metrics()["fetch"]["success"] == 2


def test_an_unknown_tool_is_told_to_the_model_and_the_run_goes_on() -> None:
    registry = flaky_registry(failures=0)
    model = ScriptedModel([[call("teleport", {"to": "mars"}), pending()], [done("cannot")]])
    result = run_auto(model, "go to mars", registry=registry)
    (failure,) = result.tool_failures
    assert (failure.tool, failure.error_type) == ("teleport", "ToolNotFoundError")
    assert "teleport" in failure.message
    assert result.final_response == "cannot"
    assert "teleport" not in registry.metrics()


def test_invalid_arguments_become_a_tool_failure_and_are_counted() -> None:
    registry = flaky_registry(failures=0)
    model = ScriptedModel(
        [
            [call("fetch", "{not json", "bad"), call("fetch", {"link": 1}, "wrong"), pending()],
            [done("gave up")],
        ]
    )
    result = run_auto(model, "fetch", registry=registry)
    assert [(f.call_id, f.error_type) for f in result.tool_failures] == [
        ("bad", "ToolArgumentsError"),
        ("wrong", "ToolArgumentsError"),
    ]
    assert registry.metrics()["fetch"]["failure"] == 2


def test_a_long_error_message_is_bounded_for_the_model() -> None:
    registry = ToolRegistry()

    @registry.register
    @tool
    def shout() -> None:
        raise ValueError("A" * 5000)

    result = run_auto(ScriptedModel([[call("shout"), done("ok")]]), "shout", registry=registry)
    assert 100 < len(result.tool_failures[0].message) <= 1000


async def test_calls_of_one_turn_run_concurrently() -> None:
    registry = ToolRegistry()
    barrier = asyncio.Barrier(3)

    @tool
    async def meet(name: str) -> str:
        async with asyncio.timeout(10):  # a sequential loop would wait here forever
            await barrier.wait()
        return name

    registry.register(meet)
    model = ScriptedModel([[*(call("meet", {"name": n}, n) for n in "abc"), done("met")]])
    with telemetry.capture(START, SUCCESS) as events:
        result = await arun_auto(model, "meet", registry=registry)
    assert [o.output for o in result.tool_outputs] == ["a", "b", "c"]  # in the model's order
    kinds = [e.event for e in events]
    assert kinds == [START] * 3 + [SUCCESS] * 3  # every start before any end: they overlap


async def test_max_concurrency_bounds_the_calls_in_flight() -> None:
    registry = ToolRegistry()
    in_flight = peak = 0

    @tool
    async def step(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):
            await asyncio.sleep(0)
        in_flight -= 1
        return n

    registry.register(step)
    model = ScriptedModel([[*(call("step", {"n": n}, f"c{n}") for n in range(6)), done("ok")]])
    result = await arun_auto(model, "steps", registry=registry, max_concurrency=2)
    assert [o.output for o in result.tool_outputs] == list(range(6))
    assert peak == 2


class TestRetryPolicy:
    """A tool's own RetryPolicy retries within the turn, through the core's invoke."""

    def test_its_retries_are_tagged_and_counted(self) -> None:
        registry = flaky_registry(failures=2, retry=RetryPolicy(max_attempts=3, backoff=None))
        model = ScriptedModel([[call("fetch", {"url": "x"}), done("fetched")]])
        with telemetry.capture(START, SUCCESS, FAILURE) as events:
            result = run_auto(model, "fetch x", registry=registry)
        assert [(e.event[-1], e.metadata["attempt"], e.metadata["retry"]) for e in events] == [
            ("start", 1, False),
            ("failure", 1, False),
            ("start", 2, True),
            ("failure", 2, True),
            ("start", 3, True),
            ("success", 3, True),
        ]
        stats = registry.metrics()["fetch"]
        assert (stats["failure"], stats["success"], stats["retries"]) == (2, 1, 2)
        assert [o.output for o in result.tool_outputs] == ["<html>x</html>"]
        assert result.tool_failures == []

    def test_one_that_gives_up_becomes_a_tool_failure(self) -> None:
        registry = flaky_registry(failures=99, retry=RetryPolicy(max_attempts=2, backoff=None))
        model = ScriptedModel([[call("fetch", {"url": "x"}), pending()], [done("down")]])
        result = run_auto(model, "fetch x", registry=registry)
        (failure,) = result.tool_failures
        assert failure.error_type == "ToolExecutionError"
        assert result.final_response == "down"
        stats = registry.metrics()["fetch"]
        assert (stats["failure"], stats["success"], stats["retries"]) == (2, 0, 1)


class TestEntryPoints:
    def script(self) -> ScriptedModel:
        return ScriptedModel([[call("fetch", {"url": "s"}), done("same", output_tokens=3)]])

    def test_run_auto_drives_the_async_loop(self) -> None:
        result = run_auto(self.script(), "fetch", registry=flaky_registry(failures=0))
        assert isinstance(result, AutoRunResult)
        assert (result.final_response, result.usage) == ("same", {"output_tokens": 3})

    async def test_arun_auto_gives_the_same_result(self) -> None:
        sync = await asyncio.to_thread(
            run_auto, self.script(), "fetch", registry=flaky_registry(failures=0)
        )
        direct = await arun_auto(self.script(), "fetch", registry=flaky_registry(failures=0))
        assert direct.thread_id != sync.thread_id  # each run gets a thread of its own
        direct.thread_id = sync.thread_id
        assert direct == sync

    async def test_run_auto_inside_an_event_loop_points_to_arun_auto(self) -> None:
        with pytest.raises(RuntimeError, match="await arun_auto"):
            run_auto(self.script(), "fetch", registry=flaky_registry(failures=0))

    def test_the_default_registry_is_used_when_none_is_given(self) -> None:
        with pytest.raises(MaxAttemptsReached) as caught:
            run_auto(
                ScriptedModel([[call("not_registered_anywhere"), pending()]]), "x", max_attempts=1
            )
        assert caught.value.result.tool_failures[0].error_type == "ToolNotFoundError"

    def test_a_model_that_returns_no_turn_is_named(self) -> None:
        class Confused:
            async def next_turn(self, conversation: Conversation) -> Turn:
                return None  # type: ignore[return-value]

        with pytest.raises(TypeError, match=r"next_turn\(\) returned a NoneType, not a Turn"):
            run_auto(Confused(), "x", registry=ToolRegistry())

    def test_something_that_is_not_a_model_is_refused(self) -> None:
        with pytest.raises(TypeError, match="next_turn"):
            run_auto(object(), "x", registry=ToolRegistry())  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [0, -1, 1.5])
    def test_bad_limits_are_rejected(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="max_attempts"):
            run_auto(self.script(), "x", registry=ToolRegistry(), max_attempts=bad)
        with pytest.raises(ValueError, match="max_concurrency"):
            run_auto(self.script(), "x", registry=ToolRegistry(), max_concurrency=bad)


def test_the_caller_context_is_merged_under_the_loop_keys() -> None:
    registry = ToolRegistry()
    seen: list[dict[str, Any]] = []

    @tool
    def whoami(ctx: ToolContext) -> str:
        seen.append(dict(ctx))
        return str(ctx["user"])

    registry.register(whoami)
    model = ScriptedModel(
        [[call("whoami", call_id="w1"), pending()], [call("whoami", call_id="w2"), done("done")]]
    )
    context = {"user": "ada", "attempt": 99, "retry": True, "thread_id": "thread_ada"}
    run_auto(model, "who", registry=registry, context=context)
    keys = ("user", "thread_id", "turn_id", "turn", "call_id", "attempt", "retry", "tool")
    assert [tuple(s[k] for k in keys) for s in seen] == [
        ("ada", "thread_ada", "turn_1", 1, "w1", 1, False, "whoami"),
        ("ada", "thread_ada", "turn_2", 2, "w2", 1, False, "whoami"),
    ]


def test_backoff_is_asked_after_every_turn_but_the_last() -> None:
    asked: list[int] = []

    def backoff(attempt: int) -> float | None:
        asked.append(attempt)
        return 0.001 if attempt == 1 else None

    model = ScriptedModel([[pending()], [pending()], [pending()]])
    with pytest.raises(MaxAttemptsReached):
        run_auto(model, "wait", registry=ToolRegistry(), max_attempts=3, backoff=backoff)
    assert asked == [1, 2]


async def test_cancellation_propagates_and_the_call_is_counted_as_a_failure() -> None:
    registry = ToolRegistry()
    started = asyncio.Event()

    @tool
    async def hang() -> None:
        started.set()
        await asyncio.Event().wait()

    registry.register(hang)
    run = asyncio.create_task(
        arun_auto(ScriptedModel([[call("hang"), done("never")]]), "hang", registry=registry)
    )
    async with asyncio.timeout(10):
        await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert registry.metrics()["hang"]["failure"] == 1


INTERRUPTED = """
from codex_tools import ToolRegistry, tool
from codex_tools.autorun import ScriptedModel, run_auto

registry = ToolRegistry()

@registry.register
@tool(quick=True)
def interrupted() -> None:
    raise KeyboardInterrupt

call = {"type": "tool.call.required", "call_id": "c1", "tool_name": "interrupted"}
try:
    run_auto(ScriptedModel([[call]]), "x", registry=registry)
except KeyboardInterrupt:
    print("propagated", registry.metrics()["interrupted"]["failure"])
"""


def test_a_keyboard_interrupt_in_a_tool_propagates_and_is_counted() -> None:
    # In a child process: a KeyboardInterrupt escaping an asyncio task upsets CPython 3.11's
    # recursion bookkeeping for the rest of the process (a later ast.parse fails).
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "propagated 1", done.stderr


async def test_a_hand_written_model_sees_the_results_of_its_calls() -> None:
    registry = flaky_registry(failures=0)

    class Echo:
        async def next_turn(self, conversation: Conversation) -> Turn:
            if not conversation.turns:
                return Turn(tool_calls=(ToolCall("fetch", '{"url": "e"}'),))
            (result,) = conversation.turns[-1].results
            return Turn(final_response=result.content, usage={"output_tokens": 1})

    result = await arun_auto(Echo(), "echo", registry=registry)
    assert result.final_response == "<html>e</html>"
    assert result.tool_outputs[0].call_id.startswith("call_")
    assert result.events == []


def test_run_auto_returns_at_a_tool_deadline_and_leaves_the_stuck_thread_behind() -> None:
    registry = ToolRegistry()
    release, finished = threading.Event(), threading.Event()

    @registry.register
    @tool(timeout=0.05)
    def stuck() -> None:
        release.wait(60)
        finished.set()

    model = ScriptedModel([[call("stuck"), done("gave up")]])
    try:
        result = run_auto(model, "wait", registry=registry)
        assert result.tool_failures[0].error_type == "ToolTimeoutError"
        assert not finished.is_set()  # asyncio.run would have waited the 60 s for it
    finally:
        release.set()
