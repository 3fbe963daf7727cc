"""The auto-run loop: ask the model for a turn, run its tool calls, feed the results back.

One async implementation; :func:`run_auto` drives it in an event loop of its own, which
leaves behind, rather than waits for, the threads of sync tools that outlive the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from codex_tools import ToolError, ToolRegistry, default_registry
from codex_tools._metrics import error_info
from codex_tools._retry import Backoff, backoff_delay
from codex_tools._runners import run
from codex_tools.autorun._model import (
    Conversation,
    Model,
    ToolCall,
    ToolFailure,
    ToolOutput,
    ToolResult,
    Turn,
    TurnRecord,
    new_id,
)
from codex_tools.autorun._result import AutoRunResult, MaxAttemptsReached

__all__ = ["arun_auto", "run_auto"]


async def arun_auto(
    model: Model,
    input: str,
    registry: ToolRegistry | None = None,
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    instructions: str | None = None,
    max_concurrency: int = 8,
) -> AutoRunResult:
    """Run ``model`` on ``input`` until it gives a final response, at most ``max_attempts``
    turns; ``instructions`` is the system prompt.

    The tool calls of a turn run through ``registry`` (the default registry if ``None``),
    at most ``max_concurrency`` at a time, each with ``context`` plus ``thread_id``,
    ``turn_id``, ``turn`` (from 1), ``call_id``, ``attempt`` and ``retry``. ``attempt`` is
    1 plus the failed calls of the same tool since its last success in this run, counted
    over the turns before, so only a call after a failure is a retry. A call that fails,
    names an unknown tool or has bad arguments becomes a :class:`ToolFailure` shown to the
    model in the next turn; cancellation propagates. Between turns the loop waits
    ``backoff(turn)`` seconds. Without a final response after ``max_attempts`` turns,
    :class:`MaxAttemptsReached` carries the partial result.
    """
    _check(model, max_attempts, instructions, max_concurrency)
    registry = default_registry() if registry is None else registry
    base = dict(context or {})
    thread_id: str | None = base.get("thread_id")
    limit = asyncio.Semaphore(max_concurrency)
    history: list[TurnRecord] = []
    failed: dict[str, int] = {}  # each tool's failed calls since its last success
    result = AutoRunResult(None, 0, [], [], {}, "", [])
    for number in range(1, max_attempts + 1):
        tools = tuple(registry.tools())
        conversation = Conversation(input, number, thread_id, tools, tuple(history), instructions)
        turn = await model.next_turn(conversation)
        if not isinstance(turn, Turn):
            kind = type(turn).__name__
            raise TypeError(f"{model!r}.next_turn() returned a {kind}, not a Turn")
        thread_id = thread_id or turn.thread_id or new_id("thread")
        turn_id = turn.turn_id or f"turn_{number}"
        result.attempts, result.thread_id = number, thread_id
        result.events.extend(turn.events)
        for name, count in turn.usage.items():
            result.usage[name] = result.usage.get(name, 0) + count
        turn_context = {**base, "thread_id": thread_id, "turn_id": turn_id, "turn": number}
        results = await _run_calls(registry, turn.tool_calls, turn_context, dict(failed), limit)
        history.append(TurnRecord(turn, turn_id, results))
        for each in results:
            if isinstance(each, ToolOutput):
                result.tool_outputs.append(each)
                failed[each.tool] = 0
            else:
                result.tool_failures.append(each)
                failed[each.tool] = failed.get(each.tool, 0) + 1
        if turn.final_response is not None:
            result.final_response = turn.final_response
            return result
        if number < max_attempts:
            delay = backoff_delay(backoff, number)
            if delay:
                await asyncio.sleep(delay)
    raise MaxAttemptsReached(result)


def _check(model: object, max_attempts: object, instructions: object, concurrency: object) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"a model needs an async next_turn(conversation) method, got {model!r}")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"max_concurrency must be an int >= 1, got {concurrency!r}")
    if instructions is not None and not isinstance(instructions, str):
        raise TypeError(f"instructions must be a string, got {type(instructions).__name__}")


async def _run_calls(
    registry: ToolRegistry,
    calls: tuple[ToolCall, ...],
    context: dict[str, Any],
    failed: dict[str, int],
    limit: asyncio.Semaphore,
) -> tuple[ToolResult, ...]:
    """Run one turn's calls concurrently; results come back in the order of ``calls``."""
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_run_call(registry, call, context, failed, limit)) for call in calls
        ]
    return tuple(task.result() for task in tasks)


async def _run_call(
    registry: ToolRegistry,
    call: ToolCall,
    context: dict[str, Any],
    failed: dict[str, int],
    limit: asyncio.Semaphore,
) -> ToolResult:
    attempt = 1 + failed.get(call.name, 0)
    where = (context["turn_id"], context["turn"], attempt)
    tags = {"call_id": call.call_id, "attempt": attempt, "retry": attempt > 1}
    async with limit:
        try:
            output = await registry.ainvoke(call.name, call.arguments, {**context, **tags})
        except ToolError as error:
            info = error_info(error)
            return ToolFailure(
                call.call_id, call.name, call.arguments, info["type"], info["message"], *where
            )
    return ToolOutput(call.call_id, call.name, call.arguments, output, *where)


def run_auto(
    model: Model,
    input: str,
    registry: ToolRegistry | None = None,
    max_attempts: int = 3,
    backoff: Backoff | None = None,
    context: Mapping[str, Any] | None = None,
    *,
    instructions: str | None = None,
    max_concurrency: int = 8,
) -> AutoRunResult:
    """:func:`arun_auto` from synchronous code (in an event loop of its own, which, unlike
    ``asyncio.run``'s, does not wait at the end for threads that tools left running)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("run_auto() cannot run inside an event loop: await arun_auto()")
    return run(
        arun_auto(
            model,
            input,
            registry,
            max_attempts,
            backoff,
            context,
            instructions=instructions,
            max_concurrency=max_concurrency,
        )
    )
