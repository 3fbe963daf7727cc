"""Metering a call that the registry does not run itself: a third driver of the call core.

A framework's tool, an upstream MCP server's tool: whoever runs it, the call is begun
when it is measured and ended once, by a ``with`` block or by hand, with the same
counters, latency and events as ``invoke``'s, from the same code (``_call``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from codex_tools._call import FIRST_TRY, begin, failed, succeed, tags
from codex_tools._metrics import MetricsStore, Shard

__all__ = ["MeasuredCall"]

_perf_ns = time.perf_counter_ns
_get_ident = threading.get_ident
NO_METADATA: Mapping[str, Any] = MappingProxyType({})


class MeasuredCall:
    """One call of ``name`` that runs elsewhere, from ``measure(...)`` to its one end.

    Its clock starts when it is made (``measure(...)``), where the start event fires, so
    a call begun by hand in one callback and ended in another is timed whole. It ends
    exactly once: :meth:`succeed`, :meth:`fail`, or leaving its ``with`` block (by an
    exception: a failure, the exception propagating unchanged; else a success with
    :attr:`output`). A second end raises :class:`RuntimeError`; leaving the block after
    ``succeed``/``fail`` ends nothing. The end may come from another thread than the start.
    """

    __slots__ = ("_ending", "_meta", "_shard", "_start", "name", "output")

    def __init__(
        self,
        metrics: MetricsStore,
        name: str,
        metadata: Mapping[str, Any],
        arguments: Any,
        context: Mapping[str, Any] | None,
    ) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a tool name is a string, not {type(name).__name__}")
        self.name = name
        #: what the success event carries when the ``with`` block ends normally
        self.output: Any = None
        self._ending = threading.Lock()  # taken by the one end, never released
        try_tags = FIRST_TRY if context is None else tags(context, 0)
        self._shard, self._meta = begin(metrics, name, metadata, arguments, context, try_tags)
        self._start = _perf_ns()

    def __repr__(self) -> str:
        state = "ended" if self.ended else "running"
        return f"<MeasuredCall {self.name!r} {state}>"

    @property
    def ended(self) -> bool:
        return self._ending.locked()

    def succeed(self, output: Any = None) -> None:
        """End the call as a success returning ``output``."""
        duration = _perf_ns() - self._start
        shard = self._end()
        self.output = output
        succeed(shard, self._meta, output, duration)

    def fail(self, error: BaseException) -> None:
        """End the call as a failure (``last_error`` is ``error``'s type and message),
        without raising: for a framework that shows errors to the model as text."""
        duration = _perf_ns() - self._start
        if not isinstance(error, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(error).__name__}")
        failed(self._end(), self._meta, error, duration)

    def _end(self) -> Shard:
        """Take the one end, or raise :class:`RuntimeError` if it was taken; the shard
        to count it in."""
        if not self._ending.acquire(False):
            raise RuntimeError(f"the call of {self.name!r} has already ended")
        shard = self._shard
        return shard if shard.owner == _get_ident() else self._other_shard()

    def _other_shard(self) -> Shard:
        """Where an end in another thread than the start is counted: each thread writes
        only to its own shard of the stats the start was counted in (a reset since then
        leaves the new stats alone)."""
        stats = self._shard.stats
        ident = _get_ident()
        return stats.shards.get(ident) or stats.new_shard(ident)

    def __enter__(self) -> MeasuredCall:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration = _perf_ns() - self._start
        if not self._ending.acquire(False):  # ended inside the block: nothing left to end
            return
        shard = self._shard
        if shard.owner != _get_ident():
            shard = self._other_shard()
        if exc is None:
            succeed(shard, self._meta, self.output, duration)
        else:
            failed(shard, self._meta, exc, duration)

    async def __aenter__(self) -> MeasuredCall:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)
