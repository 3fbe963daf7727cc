"""The tool registry: registration, invocation and the metrics of every call.

Invocation is one core shared by two thin drivers. ``_begin`` (count the start, emit the
start event), ``_arguments`` (validate, inject the context), ``_succeed`` and ``_fail``
(count the end, emit the end event, apply ``on_error``) do no I/O; ``invoke`` and
``ainvoke`` only add how the tool is called and how a retry waits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, TypeVar, cast

from pydantic import ValidationError

from codex_tools import telemetry as _telemetry
from codex_tools._errors import (
    ToolAlreadyRegisteredError,
    ToolArgumentsError,
    ToolDisabledError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolTimeoutError,
)
from codex_tools._metrics import MetricsStore, Shard, error_info
from codex_tools._retry import backoff_delay
from codex_tools._tool import Tool, ToolContext, tool

__all__ = ["ToolHandle", "ToolRegistry"]

T = TypeVar("T")

_perf_ns = time.perf_counter_ns
_span_tokens = itertools.count(1)
_TOOL_START, _TOOL_SUCCESS, _TOOL_FAILURE = _telemetry.TOOL_EVENTS
_JSON_TYPES = (str, bytes, bytearray)
_FIRST_TRY: tuple[int | None, bool] = (None, False)  # the tags of a call with no context


@dataclasses.dataclass(frozen=True, slots=True)
class ToolHandle:
    """What :meth:`ToolRegistry.register` returns; deregisters exactly that registration."""

    name: str
    tool: Tool


class _DeadlineExceeded(Exception):
    """Our own timeout fired (as opposed to the tool raising ``TimeoutError`` itself)."""


class ToolRegistry:
    """A set of tools and the metrics of their calls; instances are fully isolated."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._lock = threading.Lock()
        self._metrics = MetricsStore()
        _registries.add(self)

    def __repr__(self) -> str:
        return f"<ToolRegistry tools={sorted(self._tools)}>"

    # -- registration -------------------------------------------------------------------

    def register(
        self,
        fn: Tool | Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        replace: bool = False,
    ) -> ToolHandle:
        """Register a :class:`Tool` or a plain callable (made into one with :func:`tool`).

        ``name`` and ``description`` override the tool's own. A name in use raises
        :class:`ToolAlreadyRegisteredError` unless ``replace`` is true.
        """
        if isinstance(fn, Tool):
            new = fn
            if name is not None or description is not None:
                new = Tool(
                    name=fn.name if name is None else name,
                    fn=fn.fn,
                    description=fn.description if description is None else description,
                    parameters=fn.parameters,
                    metadata=fn.metadata,
                    enabled=fn.enabled,
                    on_error=fn.on_error,
                    timeout=fn.timeout,
                    retry=fn.retry,
                    quick=fn.quick,
                )
        else:
            new = tool(name=name, description=description)(fn)
        with self._lock:
            if not replace and new.name in self._tools:
                raise ToolAlreadyRegisteredError(
                    f"a tool named {new.name!r} is already registered", tool=new.name
                )
            self._tools[new.name] = new
        return ToolHandle(new.name, new)

    def deregister(self, tool: ToolHandle | Tool | str) -> None:
        """Remove a tool by handle, ``Tool`` or name. Its metrics stay until a reset;
        a call already running finishes and is counted."""
        name = tool if isinstance(tool, str) else tool.name
        expected = tool.tool if isinstance(tool, ToolHandle) else tool
        with self._lock:
            current = self._tools.get(name)
            if current is None or (isinstance(expected, Tool) and current is not expected):
                raise ToolNotFoundError(f"no tool {name!r} to deregister", tool=name)
            del self._tools[name]

    def lookup(self, name: str) -> Tool:
        """The registered tool called ``name``."""
        try:
            found = self._tools.get(name)
        except TypeError:  # an unhashable "name"
            found = None
        if found is None:
            raise ToolNotFoundError(f"no tool named {name!r} is registered", tool=_name(name))
        return found

    def tools(self) -> list[Tool]:
        """The registered tools, in registration order (a copy)."""
        return list(self._tools.values())

    # -- metrics ------------------------------------------------------------------------

    def metrics(self, *, buckets: bool = False) -> dict[str, dict[str, Any]]:
        """A JSON-serialisable snapshot of every tool's counters, keyed by tool name;
        ``buckets=True`` adds each tool's ``latency_buckets``, for ``merge_metrics``."""
        return self._metrics.snapshot(buckets)

    def reset_metrics(self) -> None:
        """Start every counter afresh; calls in flight now are not counted after it."""
        self._metrics.reset()

    # -- invocation ---------------------------------------------------------------------

    def invoke(
        self,
        name: str,
        args: Mapping[str, Any] | str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call a tool and return its output; an async tool is run to completion."""
        tool = self._tools.get(name) if type(name) is str else None
        if tool is None or tool.enabled is not True:
            tool = self._resolve(name, context)
        if tool.retry is None:
            return self._attempt(tool, args, context, 0)
        attempt = 0
        while True:
            try:
                return self._attempt(tool, args, context, attempt)
            except ToolExecutionError as error:
                attempt += 1
                delay = _retry_delay(tool, error, attempt)
                if delay is None:
                    raise
                if delay:
                    time.sleep(delay)

    async def ainvoke(
        self,
        name: str,
        args: Mapping[str, Any] | str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Any:
        """Call a tool without blocking the event loop: a sync tool runs in a worker
        thread (under a copy of the context) unless it is marked ``quick``."""
        tool = self._tools.get(name) if type(name) is str else None
        if tool is None or tool.enabled is not True:
            tool = self._resolve(name, context)
        if tool.retry is None:
            return await self._aattempt(tool, args, context, 0)
        attempt = 0
        while True:
            try:
                return await self._aattempt(tool, args, context, attempt)
            except ToolExecutionError as error:
                attempt += 1
                delay = _retry_delay(tool, error, attempt)
                if delay is None:
                    raise
                if delay:
                    await asyncio.sleep(delay)

    def _attempt(
        self,
        tool: Tool,
        args: Mapping[str, Any] | str | None,
        context: Mapping[str, Any] | None,
        k: int,
    ) -> Any:
        shard, tags, meta = self._begin(tool, args, context, k)
        start = _perf_ns()
        try:
            kwargs = _arguments(tool, args, context, tags)
            if tool.is_async:
                output = _run_coroutine(lambda: _call_async(tool, kwargs))
            elif tool.timeout is not None:
                output = _call_in_thread(tool, kwargs)
            else:
                output = tool.fn(**kwargs)
        except BaseException as error:  # noqa: BLE001  (every end is counted; _fail re-raises)
            return _fail(tool, shard, meta, error, _perf_ns() - start, context, tags)
        _succeed(shard, meta, output, _perf_ns() - start)
        return output

    async def _aattempt(
        self,
        tool: Tool,
        args: Mapping[str, Any] | str | None,
        context: Mapping[str, Any] | None,
        k: int,
    ) -> Any:
        shard, tags, meta = self._begin(tool, args, context, k)
        start = _perf_ns()
        try:
            kwargs = _arguments(tool, args, context, tags)
            if tool.timeout is None and tool.is_async:  # one coroutine fewer than _call_async
                output = await tool.fn(**kwargs)
            elif tool.timeout is None and tool.quick:
                output = tool.fn(**kwargs)
            else:
                output = await _call_async(tool, kwargs)
        except BaseException as error:  # noqa: BLE001  (every end is counted; _fail re-raises)
            return _fail(tool, shard, meta, error, _perf_ns() - start, context, tags)
        _succeed(shard, meta, output, _perf_ns() - start)
        return output

    def _resolve(self, name: str, context: Mapping[str, Any] | None) -> Tool:
        """The tool to call, or the caller's error; neither creates a metrics entry."""
        tool = self.lookup(name)
        enabled = tool.enabled
        if enabled is True:
            return tool
        if enabled is not False:
            tags = _tags(context, 0)
            try:
                enabled = bool(enabled(_tool_context(tool, context, tags)))
            except Exception as error:
                raise ToolDisabledError(
                    f"the enabled check of tool {tool.name!r} raised {type(error).__name__}",
                    tool=tool.name,
                ) from error
            if enabled:
                return tool
        raise ToolDisabledError(f"tool {tool.name!r} is disabled", tool=tool.name)

    def _begin(
        self, tool: Tool, args: Any, context: Mapping[str, Any] | None, k: int
    ) -> tuple[Shard, tuple[int | None, bool], dict[str, Any] | None]:
        """Count the start and announce it; what the end of the call needs is returned."""
        tags = _FIRST_TRY if context is None and not k else _tags(context, k)
        shard = self._metrics.shard(tool.name)
        meta = None
        if _telemetry._tool_events_watched:
            meta = _start_metadata(tool, args, context, tags)
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
            except BaseException as error:  # noqa: BLE001  (an interrupt in a handler ends the call)
                _fail(tool, shard, meta, error, 0, context, tags)
        return shard, tags, meta

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._metrics.after_fork_in_child()


_registries: weakref.WeakSet[ToolRegistry] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for registry in list(_registries):
        registry._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def _name(name: object) -> str | None:
    return name if isinstance(name, str) else None


def _tags(context: Mapping[str, Any] | None, k: int) -> tuple[int | None, bool]:
    """``(attempt, retry)`` of the ``k``-th try (0-based) under the caller's context.

    The first try carries the caller's attempt (``None`` if not given) and ``retry``
    (``attempt > 1`` unless the caller says); a policy's later tries count on from it.
    """
    if context is None:
        return (None, False) if k == 0 else (1 + k, True)
    try:
        attempt = context.get("attempt")
    except AttributeError:  # checked here, where it costs nothing when it is a mapping
        raise TypeError(f"context must be a mapping, not {type(context).__name__}") from None
    if k:
        return (attempt if isinstance(attempt, int) else 1) + k, True
    retry = context.get("retry")
    if retry is None:
        retry = isinstance(attempt, int) and attempt > 1
    return attempt, bool(retry)


def _tool_context(
    tool: Tool, context: Mapping[str, Any] | None, tags: tuple[int | None, bool]
) -> ToolContext:
    return ToolContext({**(context or {}), "tool": tool.name, "attempt": tags[0], "retry": tags[1]})


def _arguments(
    tool: Tool, args: Any, context: Mapping[str, Any] | None, tags: tuple[int | None, bool]
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
        kwargs[signature.context_param] = _tool_context(tool, context, tags)
    return kwargs


def _start_metadata(
    tool: Tool, args: Any, context: Mapping[str, Any] | None, tags: tuple[int | None, bool]
) -> dict[str, Any]:
    ctx = context or {}
    return {
        "tool": tool.name,
        "metadata": tool.metadata,
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


def _succeed(shard: Shard, meta: dict[str, Any] | None, output: Any, duration: int) -> None:
    shard.record(duration, True)
    if meta is not None and _TOOL_SUCCESS in _telemetry._table:
        _telemetry.execute(
            _TOOL_SUCCESS,
            _end_measurements(duration),
            MappingProxyType({**meta, "output": output, "result": "ok"}),
        )


def _fail(
    tool: Tool,
    shard: Shard,
    meta: dict[str, Any] | None,
    error: BaseException,
    duration: int,
    context: Mapping[str, Any] | None,
    tags: tuple[int | None, bool],
) -> Any:
    """End a failed call: its output if ``on_error`` supplies one, else raise.

    Argument errors and cancellations (any non-``Exception``) propagate unchanged;
    anything the tool raised becomes a :class:`ToolExecutionError` with it as the cause.
    """
    raised: BaseException = error
    if isinstance(error, Exception) and not isinstance(error, ToolArgumentsError):
        timed_out = isinstance(error, _DeadlineExceeded)
        if timed_out:
            error = TimeoutError(f"tool {tool.name!r} timed out after {tool.timeout} s")
        if tool.on_error is not None:
            try:
                output = tool.on_error(error, _tool_context(tool, context, tags))
            except Exception as handled:  # noqa: BLE001  (on_error re-raising is a failure)
                timed_out = timed_out and handled is error
                error = handled
            else:
                _succeed(shard, meta, output, duration)
                return output
        info = error_info(error)
        raised = (
            ToolTimeoutError(info["message"], tool=tool.name)
            if timed_out
            else ToolExecutionError(
                f"tool {tool.name!r} failed: {info['type']}: {info['message']}", tool=tool.name
            )
        )
    shard.record(duration, False)
    shard.stats.failed(error_info(error))
    if meta is not None and _TOOL_FAILURE in _telemetry._table:
        _telemetry.execute(
            _TOOL_FAILURE,
            _end_measurements(duration),
            MappingProxyType({**meta, "error": error, "result": "error"}),
        )
    try:
        if raised is error:
            raise error
        raise raised from error
    finally:
        # The traceback holds this frame and the frame holds the exceptions: a cycle that
        # kept whatever the tool's exception held alive until the cyclic GC ran.
        del error, raised


def _retry_delay(tool: Tool, error: ToolExecutionError, attempt: int) -> float | None:
    """Seconds to wait before another try after ``attempt`` failed, or None to give up."""
    policy = tool.retry
    cause = error.__cause__
    if policy is None or cause is None or not policy.should_retry(cause, attempt):
        return None
    return backoff_delay(policy.backoff, attempt)


async def _call_async(tool: Tool, kwargs: dict[str, Any]) -> Any:
    """Await the tool (a sync one in a worker thread), cancelling it at its deadline."""
    if tool.is_async:
        work: Coroutine[Any, Any, Any] = tool.fn(**kwargs)
    else:
        work = asyncio.to_thread(tool.fn, **kwargs)
    if tool.timeout is None:
        return await work
    scope = asyncio.timeout(tool.timeout)
    try:
        async with scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise _DeadlineExceeded from None
        raise


def _run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, in a thread of its own if this one
    already runs an event loop (which cannot be re-entered).

    The tool's exception leaves the loop as a value in a box that is emptied once read:
    raised out of ``asyncio.run``, or left in the finished task's result, it would be
    reachable from its own traceback (whose frames lead back to the runner and its task),
    a reference cycle that only the cyclic garbage collector could free.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_loop = False
    else:
        in_loop = True
    # Not inside the except block: a tool failing there would take the RuntimeError as
    # its context, and with it this frame.
    if in_loop:
        box = _in_thread(lambda: asyncio.run(_caught(make())), None)
    else:
        box = asyncio.run(_caught(make()))
    output, error = box
    box.clear()
    if error is not None:
        try:
            raise error
        finally:
            del error
    return cast(T, output)  # no error: the coroutine returned it


async def _caught(work: Coroutine[Any, Any, Any]) -> list[Any]:
    """``[output, None]`` or ``[None, error]``, for :func:`_run_coroutine`."""
    try:
        return [await work, None]
    except Exception as error:  # noqa: BLE001  (re-raised by _run_coroutine)
        return [None, error]


def _call_in_thread(tool: Tool, kwargs: dict[str, Any]) -> Any:
    """A sync tool with a timeout: the caller waits at most ``timeout``; the thread runs
    on to completion in the background (Python cannot stop it) and its result is dropped."""
    return _in_thread(lambda: tool.fn(**kwargs), tool.timeout)


def _in_thread(function: Callable[[], T], timeout: float | None) -> T:
    future: concurrent.futures.Future[T] = concurrent.futures.Future()
    thread = threading.Thread(
        target=_run_into,
        args=(future, contextvars.copy_context(), function),
        name="codex-tools-call",
        daemon=True,
    )
    thread.start()
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():
            raise
        raise _DeadlineExceeded from None
    finally:
        del future  # it holds the exception whose traceback holds this frame


def _run_into(
    future: concurrent.futures.Future[T], context: contextvars.Context, function: Callable[[], T]
) -> None:
    try:
        future.set_result(context.run(function))
    except BaseException as error:  # noqa: BLE001  (handed to the waiting caller)
        future.set_exception(error)
        del future  # the traceback holds this frame: it must not hold the future too
