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

from codex_tools._call import failed, succeed
from codex_tools._metrics import Shard

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

    __slots__ = ("_meta", "_open", "_start", "name", "output")

    def __init__(self, name: str, shard: Shard, meta: dict[str, Any] | None) -> None:
        """A call that ``ToolRegistry.measure`` has begun (counted in ``shard``)."""
        self.name = name
        #: what the success event carries when the ``with`` block ends normally
        self.output: Any = None
        self._meta = meta
        # The one end pops it: ``list.pop`` is atomic, so of two ends racing in two threads
        # only one takes the shard; and a list costs half as much as a lock.
        self._open = [shard]
        self._start = _perf_ns()

    def __repr__(self) -> str:
        state = "ended" if self.ended else "running"
        return f"<MeasuredCall {self.name!r} {state}>"

    @property
    def ended(self) -> bool:
        return not self._open

    def succeed(self, output: Any = None) -> None:
        """End the call as a success returning ``output``."""
        duration = _perf_ns() - self._start
        shard = self._take()
        if shard is None:
            raise self._ended_already()
        self.output = output
        succeed(shard, self._meta, output, duration)

    def fail(self, error: BaseException) -> None:
        """End the call as a failure (``last_error`` is ``error``'s type and message),
        without raising: for a framework that shows errors to the model as text."""
        duration = _perf_ns() - self._start
        if not isinstance(error, BaseException):
            raise TypeError(f"fail() takes an exception, not {type(error).__name__}")
        shard = self._take()
        if shard is None:
            raise self._ended_already()
        failed(shard, self._meta, error, duration)

    def _take(self) -> Shard | None:
        """Take the one end: the shard to count it in, or None if it was taken.

        An end in another thread than the start is counted in that thread's shard of the
        stats the start was counted in: each thread writes only to its own (and a reset
        since the start leaves the new stats alone).
        """
        try:
            shard = self._open.pop()
        except IndexError:
            return None
        ident = _get_ident()
        if shard.owner == ident:
            return shard
        stats = shard.stats
        return stats.shards.get(ident) or stats.new_shard(ident)

    def _ended_already(self) -> RuntimeError:
        return RuntimeError(f"the call of {self.name!r} has already ended")

    def __enter__(self) -> MeasuredCall:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        duration = _perf_ns() - self._start
        shard = self._take()
        if shard is None:  # ended inside the block: nothing left to end
            return
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
