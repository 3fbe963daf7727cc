"""The call core: what every counted call does, whoever runs the tool. No I/O.

A call is begun (:func:`begin`: count the start, announce it), then ended once, by
:func:`succeed` or :func:`failed` (count the end, announce it). :func:`arguments`
validates a registry tool's arguments and :func:`fail` applies its ``on_error`` and turns
what it raised into the error its caller sees. The drivers (``ToolRegistry.invoke`` and
``ainvoke``, :class:`codex_tools.MeasuredCall`) add only how the tool is called and
waited for; the runners (``_runners``) add where.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from codex_tools import telemetry as _telemetry
from codex_tools._errors import ToolArgumentsError, ToolExecutionError, ToolTimeoutError
from codex_tools._metrics import MetricsStore, Shard, error_info
from codex_tools._tool import Tool, ToolContext

__all__ = [
    "FAILURES",
    "FIRST_TRY",
    "DeadlineExceeded",
    "Tags",
    "arguments",
    "begin",
    "fail",
    "failed",
    "running",
    "running_tool",
    "succeed",
    "tags",
    "tool_context",
    "track_running",
    "tracking",
]

#: ``(attempt, retry)`` of one try.
Tags = tuple[int, bool]
FIRST_TRY: Tags = (1, False)  # the tags of a call with no context

_span_tokens = itertools.count(1)
_get_ident = threading.get_ident
_TOOL_START, _TOOL_SUCCESS, _TOOL_FAILURE = _telemetry.TOOL_EVENTS
_JSON_TYPES = (str, bytes, bytearray)


#: What a tool raising means it failed. ``SystemExit`` is one (an argparse-based tool
#: given bad input): it must never end the host. Interrupts and cancellation are not.
FAILURES = (Exception, SystemExit)


class DeadlineExceeded(Exception):
    """Our own timeout fired (as opposed to the tool raising ``TimeoutError`` itself);
    its message, if any, says why."""


def tags(context: Mapping[str, Any] | None, k: int) -> Tags:
    """``(attempt, retry)`` of the ``k``-th try (0-based) of a policy under the caller's
    context.

    The first try carries the caller's attempt (1 unless it gives an int from 1) and
    ``retry`` (``attempt > 1`` unless the caller says); a policy's later tries count on
    from it.
    """
    if context is None:
        return FIRST_TRY if k == 0 else (1 + k, True)
    try:
        attempt = context.get("attempt", 1)
    except AttributeError:  # checked here, where it costs nothing when it is a mapping
        raise TypeError(f"context must be a mapping, not {type(context).__name__}") from None
    if type(attempt) is not int or attempt < 1:
        attempt = 1
    if k:
        return attempt + k, True
    retry = context.get("retry")
    return attempt, attempt > 1 if retry is None else bool(retry)


def tool_context(tool: Tool, context: Mapping[str, Any] | None, tags: Tags) -> ToolContext:
    return ToolContext({**(context or {}), "tool": tool.name, "attempt": tags[0], "retry": tags[1]})


def arguments(
    tool: Tool, args: Any, context: Mapping[str, Any] | None, tags: Tags
) -> dict[str, Any]:
    """Validated keyword arguments, with the context injected where the tool asks."""
    signature = tool._signature
    try:
        if type(args) is dict:  # the common case first: no ABC or union checks
            kwargs: dict[str, Any] = signature.validator.validate_python(args)
        elif args is None:
            kwargs = signature.validator.validate_python({})
        elif isinstance(args, _JSON_TYPES):
            kwargs = signature.validator.validate_json(args)
        elif isinstance(args, Mapping):
            kwargs = signature.validator.validate_python(args)
        else:
            raise ToolArgumentsError(
                f"arguments of tool {tool.name!r} must be a mapping or a JSON object string, "
                f"not {type(args).__name__}",
                tool=tool.name,
            )
    except ValidationError as error:
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        summary = "; ".join(
            f"{'.'.join(map(str, problem['loc'])) or 'arguments'}: {problem['msg']}"
            for problem in problems[:5]
        )
        raise ToolArgumentsError(
            f"invalid arguments for tool {tool.name!r}: {summary}"[:1000],
            tool=tool.name,
            errors=[dict(problem) for problem in problems],
        ) from error
    except ToolArgumentsError:
        raise
    except Exception as error:  # a mapping that cannot be read: the tool never ran
        info = error_info(error)
        message = f"arguments of tool {tool.name!r} could not be read: {info['type']}"
        raise ToolArgumentsError(f"{message}: {info['message']}"[:1000], tool=tool.name) from error
    if signature.context_param is not None:
        kwargs[signature.context_param] = tool_context(tool, context, tags)
    return kwargs


def begin(
    metrics: MetricsStore,
    name: str,
    metadata: Mapping[str, Any],
    args: Any,
    context: Mapping[str, Any] | None,
    tags: Tags,
) -> tuple[Shard, dict[str, Any] | None]:
    """Count the start and announce it; what the end of the call needs is returned.

    An interrupt raised by a start handler ends the call, as a failure, and propagates.
    """
    # The calling thread's shard of the tool's stats (MetricsStore.shard, inlined: it is
    # on the path of every call, and a Python call costs more than these lines).
    stats = metrics.by_name.get(name) or metrics.stats(name)
    ident = _get_ident()
    shard = stats.shards.get(ident) or stats.new_shard(ident)
    meta = None
    if _telemetry._tool_events_watched:
        meta = _start_metadata(name, metadata, args, context, tags)
    shard.started += 1
    if tags[1]:
        shard.retries += 1
    if meta is not None and _TOOL_START in _telemetry._table:
        now = time.monotonic_ns()
        try:
            _telemetry.execute(
                _TOOL_START,
                {"system_time": time.time_ns(), "monotonic_time": now},
                MappingProxyType(meta),  # read-only: the end event is built from it
            )
        except BaseException as error:
            failed(shard, meta, error, 0)
            raise
    return shard, meta


def _start_metadata(
    name: str,
    metadata: Mapping[str, Any],
    args: Any,
    context: Mapping[str, Any] | None,
    tags: Tags,
) -> dict[str, Any]:
    ctx = context or {}
    return {
        "tool": name,
        "metadata": metadata,
        "arguments": args,
        "retry": tags[1],
        "attempt": tags[0],
        "call_id": ctx.get("call_id"),
        "thread_id": ctx.get("thread_id"),
        "turn_id": ctx.get("turn_id"),
        "originator": ctx.get("originator", "sdk"),
        "span_token": next(_span_tokens),
    }


def _end_measurements(duration: int) -> dict[str, Any]:
    return {
        "system_time": time.time_ns(),
        "monotonic_time": time.monotonic_ns(),
        "duration": duration,
        "duration_ms": duration / 1e6,
    }


def succeed(shard: Shard, meta: dict[str, Any] | None, output: Any, duration: int) -> None:
    """Count a success that took ``duration`` ns and announce it."""
    shard.record(duration, True)
    if meta is not None and _TOOL_SUCCESS in _telemetry._table:
        _telemetry.execute(
            _TOOL_SUCCESS,
            _end_measurements(duration),
            MappingProxyType({**meta, "output": output, "result": "ok"}),
        )


def failed(shard: Shard, meta: dict[str, Any] | None, error: BaseException, duration: int) -> None:
    """Count a failure (``error`` becomes ``last_error``) and announce it."""
    shard.record(duration, False)
    shard.stats.failed(error_info(error))
    if meta is not None and _TOOL_FAILURE in _telemetry._table:
        _telemetry.execute(
            _TOOL_FAILURE,
            _end_measurements(duration),
            MappingProxyType({**meta, "error": error, "result": "error"}),
        )


def fail(
    tool: Tool,
    shard: Shard,
    meta: dict[str, Any] | None,
    error: BaseException,
    duration: int,
    context: Mapping[str, Any] | None,
    tags: Tags,
    ran: bool,
) -> Any:
    """End a failed call of a registry tool: its output if ``on_error`` supplies one,
    else raise.

    Before the tool ``ran``, the error is about its own arguments (or an interrupt) and
    propagates unchanged, as do cancellations and interrupts (``KeyboardInterrupt``,
    ``CancelledError``). Anything the tool raised, ``SystemExit`` and another tool's
    ``ToolArgumentsError`` included, becomes a :class:`ToolExecutionError` with it as the
    cause.
    """
    raised: BaseException = error
    if ran and isinstance(error, FAILURES):
        timed_out = isinstance(error, DeadlineExceeded)
        if timed_out:
            error = TimeoutError(
                str(error) or f"tool {tool.name!r} timed out after {tool.timeout} s"
            )
        if tool.on_error is not None:
            try:
                output = tool.on_error(error, tool_context(tool, context, tags))
            except FAILURES as handled:  # on_error re-raising is a failure
                timed_out = timed_out and handled is error
                error = handled
            else:
                succeed(shard, meta, output, duration)
                return output
        info = error_info(error)
        raised = (
            ToolTimeoutError(info["message"], tool=tool.name)
            if timed_out
            else ToolExecutionError(
                f"tool {tool.name!r} failed: {info['type']}: {info['message']}", tool=tool.name
            )
        )
    failed(shard, meta, error, duration)
    try:
        if raised is error:
            raise error
        raise raised from error
    finally:
        # The traceback holds this frame and the frame holds the exceptions: a cycle that
        # kept whatever the tool's exception held alive until the cyclic GC ran.
        del error, raised


running: ContextVar[Tool | None] = ContextVar("codex_tools_running_tool", default=None)
#: Whether the drivers set :data:`running`: only once someone asked (it costs ~0.2 µs).
tracking = False


def track_running() -> None:
    """From now on, mark the registry tool that runs in each context, for
    :func:`running_tool`. An adapter that meters a framework's tool calls calls this
    when it is installed."""
    global tracking
    tracking = True


def running_tool() -> Tool | None:
    """The registry tool whose function runs in this context (under ``invoke`` or
    ``ainvoke``, in the tool's own thread or task and whatever they start), else None,
    once :func:`track_running` was called: an adapter metering a framework's tool calls
    checks it so that a registry tool offered to that framework is not counted twice."""
    return running.get()
