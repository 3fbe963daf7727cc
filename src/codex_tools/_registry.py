"""The tool registry: registration, and the two thin drivers of the call core.

``invoke`` and ``ainvoke`` add to the core (``_call``: count, announce, validate, end)
only how the tool is called and how a retry waits; where it runs when not inline, and
how long the caller waits for it, is ``_runners``'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from codex_tools import _call
from codex_tools import telemetry as _telemetry
from codex_tools._call import (
    FAILURES,
    FIRST_TRY,
    arguments,
    begin,
    fail,
    running,
    succeed,
    tags,
    tool_context,
)
from codex_tools._errors import (
    ToolAlreadyRegisteredError,
    ToolDisabledError,
    ToolExecutionError,
    ToolNotFoundError,
)
from codex_tools._measure import NO_METADATA, MeasuredCall
from codex_tools._metrics import MetricsStore, Shard, error_info
from codex_tools._retry import backoff_delay
from codex_tools._runners import call_async, call_in_thread, run_coroutine
from codex_tools._tool import Tool, tool

__all__ = ["ToolHandle", "ToolRegistry"]

_perf_ns = time.perf_counter_ns


@dataclasses.dataclass(frozen=True, slots=True)
class ToolHandle:
    """What :meth:`ToolRegistry.register` returns; deregisters exactly that registration."""

    name: str
    tool: Tool


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
                new = fn._renamed(name, description)
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

    def measure(
        self,
        name: str,
        arguments: Any = None,
        context: Mapping[str, Any] | None = None,
    ) -> MeasuredCall:
        """Count a call that runs elsewhere (a framework's tool, an upstream server's) as
        ``invoke`` counts its own; the name need not be registered. Use the result as a
        ``with``/``async with`` block, or end it by hand with ``succeed``/``fail``."""
        if not isinstance(name, str):
            raise TypeError(f"a tool name is a string, not {type(name).__name__}")
        shard, meta = self._begin(name, arguments, context)
        return MeasuredCall(name, shard, meta)

    def _begin(
        self, name: str, arguments: Any, context: Mapping[str, Any] | None
    ) -> tuple[Shard, dict[str, Any] | None]:
        """Begin a call that runs elsewhere: what :meth:`measure` does, without the
        :class:`MeasuredCall`. For an adapter's wrapper that ends the call itself, in the
        same thread, with ``_call.succeed``/``failed``: it sits on the path of every tool
        call of a framework, where an object and three calls less is ~0.7 µs less."""
        # The tool's metadata goes only into events: looked up only for someone to see it.
        known = self._tools.get(name) if _telemetry._tool_events_watched else None
        return begin(
            self._metrics,
            name,
            NO_METADATA if known is None else known.metadata,
            arguments,
            context,
            FIRST_TRY if context is None else tags(context, 0),
        )

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
        try_tags = FIRST_TRY if context is None and not k else tags(context, k)
        shard, meta = begin(self._metrics, tool.name, tool.metadata, args, context, try_tags)
        start = _perf_ns()
        kwargs = None
        try:
            kwargs = arguments(tool, args, context, try_tags)
            marker = running.set(tool) if _call.tracking else None
            try:
                if tool.is_async:
                    output = run_coroutine(tool, lambda: call_async(tool, kwargs))
                elif tool.timeout is not None:
                    output = call_in_thread(tool, kwargs)
                else:
                    output = tool.fn(**kwargs)
            finally:
                if marker is not None:
                    running.reset(marker)
        except BaseException as error:  # noqa: BLE001  (every end is counted; fail re-raises)
            duration = _perf_ns() - start
            return fail(tool, shard, meta, error, duration, context, try_tags, kwargs is not None)
        succeed(shard, meta, output, _perf_ns() - start)
        return output

    async def _aattempt(
        self,
        tool: Tool,
        args: Mapping[str, Any] | str | None,
        context: Mapping[str, Any] | None,
        k: int,
    ) -> Any:
        try_tags = FIRST_TRY if context is None and not k else tags(context, k)
        shard, meta = begin(self._metrics, tool.name, tool.metadata, args, context, try_tags)
        start = _perf_ns()
        kwargs = None
        try:
            kwargs = arguments(tool, args, context, try_tags)
            marker = running.set(tool) if _call.tracking else None
            try:
                if tool.timeout is None and tool.is_async:  # a coroutine fewer than call_async
                    output = await tool.fn(**kwargs)
                elif tool.timeout is None and tool.quick:
                    output = tool.fn(**kwargs)
                else:
                    output = await call_async(tool, kwargs)
            finally:
                if marker is not None:
                    running.reset(marker)
        except BaseException as error:  # noqa: BLE001  (every end is counted; fail re-raises)
            duration = _perf_ns() - start
            return fail(tool, shard, meta, error, duration, context, try_tags, kwargs is not None)
        succeed(shard, meta, output, _perf_ns() - start)
        return output

    def _resolve(self, name: str, context: Mapping[str, Any] | None) -> Tool:
        """The tool to call, or the caller's error; neither creates a metrics entry."""
        tool = self.lookup(name)
        enabled = tool.enabled
        if enabled is True:
            return tool
        if enabled is not False:
            try:
                enabled = bool(enabled(tool_context(tool, context, tags(context, 0))))
            except FAILURES as error:
                raise ToolDisabledError(
                    f"the enabled check of tool {tool.name!r} raised {type(error).__name__}",
                    tool=tool.name,
                ) from error
            if enabled:
                return tool
        raise ToolDisabledError(f"tool {tool.name!r} is disabled", tool=tool.name)

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


def _retry_delay(tool: Tool, error: ToolExecutionError, attempt: int) -> float | None:
    """Seconds to wait before another try after ``attempt`` failed, or None to give up.

    A policy that raises (its ``retry_on`` predicate, its backoff) gives up: the caller
    gets the tool's failure, with a note saying why it was not retried.
    """
    policy = tool.retry
    cause = error.__cause__
    try:
        if policy is None or cause is None or not policy.should_retry(cause, attempt):
            return None
        return backoff_delay(policy.backoff, attempt)
    except Exception as broken:  # noqa: BLE001  (the tool's failure is what the caller gets)
        info = error_info(broken)
        error.add_note(
            f"not retried: the retry policy of tool {tool.name!r} raised "
            f"{info['type']}: {info['message']}"
        )
        return None
