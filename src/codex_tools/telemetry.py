"""A small, Pythonic port of Erlang's ``:telemetry``.

Handlers are attached to event names (tuples of strings) and called synchronously, in
the emitting thread or task, with ``(event, measurements, metadata, config)``.

Storage is a copy-on-write table: attaching and detaching replace it under a lock, and
``execute`` reads it without one, so dispatch never waits and sees the handler list as it
was when the event fired. A handler that raises is detached from every event it was
attached to, logged on the ``codex_tools.telemetry`` logger, and reported as the event
``("telemetry", "handler", "failure")``:

- measurements: ``monotonic_time`` (ns), ``system_time`` (ns since the epoch)
- metadata: ``event_name``, ``handler_id``, ``handler_config``, ``kind`` (``"error"``),
  ``reason`` (the exception), ``stacktrace`` (the formatted traceback, a string)

The tool events, emitted by the registry for every counted invocation:

- ``("codex", "tool", "start")``: measurements ``system_time``, ``monotonic_time``
- ``("codex", "tool", "success")`` and ``("codex", "tool", "failure")``: the same plus
  ``duration`` (ns, int) and ``duration_ms`` (float)
- metadata: ``tool``, ``metadata`` (the tool's), ``arguments`` (as given), ``retry``,
  ``attempt``, ``call_id``, ``thread_id``, ``turn_id``, ``originator``, ``span_token`` (the
  same on an invocation's start and end); on success ``output`` and ``result="ok"``; on
  failure ``error`` (what the tool raised, the ``ToolArgumentsError``, or the cancellation)
  and ``result="error"``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import Any, NamedTuple

__all__ = [
    "HANDLER_FAILURE",
    "TOOL_EVENTS",
    "TOOL_FAILURE",
    "TOOL_START",
    "TOOL_SUCCESS",
    "CapturedEvent",
    "EventName",
    "Handler",
    "HandlerInfo",
    "attach",
    "attach_default_logger",
    "attach_many",
    "capture",
    "detach",
    "execute",
    "list_handlers",
    "span",
]

EventName = tuple[str, ...]
#: ``handler(event, measurements, metadata, config)``
Handler = Callable[[EventName, Mapping[str, Any], Mapping[str, Any], Any], None]

TOOL_START: EventName = ("codex", "tool", "start")
TOOL_SUCCESS: EventName = ("codex", "tool", "success")
TOOL_FAILURE: EventName = ("codex", "tool", "failure")
TOOL_EVENTS: tuple[EventName, ...] = (TOOL_START, TOOL_SUCCESS, TOOL_FAILURE)
HANDLER_FAILURE: EventName = ("telemetry", "handler", "failure")

logger = logging.getLogger("codex_tools.telemetry")


class HandlerInfo(NamedTuple):
    """One attachment, as :func:`list_handlers` reports it."""

    id: str
    event_name: EventName
    function: Handler
    config: Any


_lock = threading.Lock()
# event -> handlers for it. Replaced whole, never mutated, so readers need no lock.
_table: dict[EventName, tuple[HandlerInfo, ...]] = {}
# Whether any tool event has a handler: the registry's one check before building anything.
_tool_events_watched = False


def _install(table: dict[EventName, tuple[HandlerInfo, ...]]) -> None:
    global _table, _tool_events_watched
    _table = table
    _tool_events_watched = any(event in table for event in TOOL_EVENTS)


def _event_name(event: Iterable[str]) -> EventName:
    name = tuple(event)
    if not name or not all(isinstance(part, str) for part in name):
        raise ValueError(f"an event name is a non-empty tuple of strings, got {event!r}")
    return name


def attach(handler_id: str, event: Sequence[str], function: Handler, config: Any = None) -> None:
    """Call ``function`` for every ``event``; ``handler_id`` must be unused (``ValueError``)."""
    attach_many(handler_id, [event], function, config)


def attach_many(
    handler_id: str, events: Iterable[Sequence[str]], function: Handler, config: Any = None
) -> None:
    """Attach one handler, under one id, to several events."""
    names = list(dict.fromkeys(_event_name(event) for event in events))
    if not names:
        raise ValueError("attach_many needs at least one event")
    if not callable(function):
        raise TypeError(f"a telemetry handler must be callable, got {function!r}")
    with _lock:
        if any(info.id == handler_id for infos in _table.values() for info in infos):
            raise ValueError(f"a telemetry handler with id {handler_id!r} is already attached")
        table = dict(_table)
        for name in names:
            table[name] = (*table.get(name, ()), HandlerInfo(handler_id, name, function, config))
        _install(table)


def detach(handler_id: str) -> bool:
    """Detach ``handler_id`` from every event; False if no handler had that id."""
    with _lock:
        table = {
            name: tuple(info for info in infos if info.id != handler_id)
            for name, infos in _table.items()
        }
        table = {name: infos for name, infos in table.items() if infos}
        found = sum(map(len, table.values())) != sum(map(len, _table.values()))
        _install(table)
    return found


def list_handlers(prefix: Sequence[str] = ()) -> list[HandlerInfo]:
    """Every attachment whose event name starts with ``prefix`` (all for ``()``)."""
    start = tuple(prefix)
    return [info for name, infos in _table.items() if name[: len(start)] == start for info in infos]


def listening(event: EventName) -> bool:
    """Whether anything is attached to ``event``: check before building a payload."""
    return event in _table


def execute(
    event: Sequence[str], measurements: Mapping[str, Any], metadata: Mapping[str, Any]
) -> None:
    """Call every handler attached to ``event``; a raising handler is detached, never seen."""
    name = event if type(event) is tuple else tuple(event)
    handlers = _table.get(name)
    if handlers:
        _dispatch(handlers, name, measurements, metadata)


def _dispatch(
    handlers: tuple[HandlerInfo, ...],
    event: EventName,
    measurements: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> None:
    for info in handlers:
        try:
            info.function(event, measurements, metadata, info.config)
        except (Exception, SystemExit) as error:  # noqa: BLE001  (must never break the emitter)
            _handler_failed(info, event, error)


def _handler_failed(info: HandlerInfo, event: EventName, error: BaseException) -> None:
    detach(info.id)
    with suppress(Exception):  # a broken logging setup must not reach the emitter either
        logger.error(
            "telemetry handler %r failed on %r and was detached",
            info.id,
            event,
            exc_info=(type(error), error, error.__traceback__),
        )
    execute(
        HANDLER_FAILURE,
        {"monotonic_time": time.monotonic_ns(), "system_time": time.time_ns()},
        {
            "event_name": event,
            "handler_id": info.id,
            "handler_config": info.config,
            "kind": "error",
            "reason": error,
            "stacktrace": "".join(traceback.format_exception(error)),
        },
    )


class span:
    """Emit ``prefix + ("start",)`` on entry and ``("stop",)`` or ``("exception",)`` on exit.

    Works with ``with`` and ``async with``. Stop and exception events carry ``duration``
    (ns) and ``monotonic_time``; the exception event's metadata adds ``kind``, ``reason``
    and ``stacktrace``, and the exception is re-raised unchanged. Metadata added to
    ``span.metadata`` inside the block is reported on the closing event.
    """

    __slots__ = ("_start", "metadata", "prefix")

    def __init__(self, prefix: Sequence[str], metadata: Mapping[str, Any] | None = None) -> None:
        self.prefix = _event_name(prefix)
        self.metadata: dict[str, Any] = {**(metadata or {}), "telemetry_span_context": object()}
        self._start = 0

    def __enter__(self) -> span:
        self._start = time.monotonic_ns()
        execute(
            (*self.prefix, "start"),
            {"monotonic_time": self._start, "system_time": time.time_ns()},
            self.metadata,
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        now = time.monotonic_ns()
        measurements = {"duration": now - self._start, "monotonic_time": now}
        if exc is None:
            execute((*self.prefix, "stop"), measurements, self.metadata)
            return
        metadata = {
            **self.metadata,
            "kind": "error" if isinstance(exc, Exception) else "exit",
            "reason": exc,
            "stacktrace": "".join(traceback.format_exception(exc)),
        }
        execute((*self.prefix, "exception"), measurements, metadata)

    async def __aenter__(self) -> span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class CapturedEvent(NamedTuple):
    """One event seen by :func:`capture`."""

    event: EventName
    measurements: Mapping[str, Any]
    metadata: Mapping[str, Any]


@contextmanager
def capture(*events: Sequence[str]) -> Iterator[list[CapturedEvent]]:
    """Collect the events emitted inside the block, for tests.

    With no events named, collects the tool events and handler failures.
    """
    seen: list[CapturedEvent] = []
    handler_id = f"codex_tools.capture.{id(seen)}"

    def record(
        event: EventName, measurements: Mapping[str, Any], metadata: Mapping[str, Any], _: Any
    ) -> None:
        seen.append(CapturedEvent(event, dict(measurements), dict(metadata)))

    attach_many(handler_id, events or (*TOOL_EVENTS, HANDLER_FAILURE), record)
    try:
        yield seen
    finally:
        detach(handler_id)


DEFAULT_LOGGER_ID = "codex_tools.default_logger"


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # it may have been held by another thread at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


def attach_default_logger(level: int = logging.INFO) -> str:
    """Log one line per tool call on the ``codex_tools`` logger; returns the handler id.

    It adds no logging handler: the lines show only once logging is configured to let
    ``level`` through, e.g. ``logging.basicConfig(level=logging.INFO)`` (unconfigured,
    Python prints only warnings and above). Calling it again replaces the earlier one
    (so the level can change).
    """
    log = logging.getLogger("codex_tools")

    def log_call(
        event: EventName, measurements: Mapping[str, Any], metadata: Mapping[str, Any], _: Any
    ) -> None:
        error = metadata.get("error")
        log.log(
            level,
            "tool=%s result=%s duration_ms=%.3f attempt=%s retry=%s error=%s",
            metadata["tool"],
            metadata["result"],
            measurements["duration_ms"],
            metadata["attempt"],
            metadata["retry"],
            None if error is None else type(error).__name__,
        )

    detach(DEFAULT_LOGGER_ID)
    attach_many(DEFAULT_LOGGER_ID, [TOOL_SUCCESS, TOOL_FAILURE], log_call)
    return DEFAULT_LOGGER_ID
