"""Retry policies and backoffs: small callables, so a plain function works as well.

A backoff is a function of the attempt number that just failed (1, 2, ...) returning the
delay in seconds before the next one; ``None`` or ``0`` means no wait. The library does
the waiting, with ``time.sleep`` or ``asyncio.sleep`` as fits the caller.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable

__all__ = ["Backoff", "RetryOn", "RetryPolicy", "backoff_delay", "exponential_backoff"]

Backoff = Callable[[int], float | None]
#: Which failures are retried: exception classes, or a predicate of the exception.
RetryOn = type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class exponential_backoff:
    """``base * 2 ** (attempt - 1)`` seconds capped at ``cap``; with ``jitter`` (the
    default) a uniform draw below that ("full jitter"), so retrying clients spread out."""

    base: float = 0.1
    cap: float = 10.0
    jitter: bool = True

    def __call__(self, attempt: int) -> float:
        delay = min(self.cap, self.base * 2.0 ** max(attempt - 1, 0))
        return random.uniform(0.0, delay) if self.jitter else delay


def backoff_delay(backoff: Backoff | None, attempt: int) -> float:
    """The non-negative delay a backoff asks for after ``attempt`` failed."""
    if backoff is None:
        return 0.0
    delay = backoff(attempt)
    seconds = float(delay) if delay else 0.0
    if not math.isfinite(seconds):
        raise ValueError(f"a backoff returned {delay!r} for attempt {attempt}, not a delay")
    return max(seconds, 0.0)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Re-invoke a failing tool within the same call.

    Each attempt is counted and reported on its own; attempts after the first carry
    ``retry=True`` and their number. ``retry_on`` is matched against what the tool raised
    (a timeout is a ``TimeoutError``); invalid arguments and cancellation are never retried.
    """

    max_attempts: int = 3
    backoff: Backoff | None = dataclasses.field(default_factory=exponential_backoff)
    retry_on: RetryOn = Exception

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(f"max_attempts must be an int >= 1, got {self.max_attempts!r}")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether the failure ``error`` of attempt number ``attempt`` earns another one."""
        if attempt >= self.max_attempts:
            return False
        retry_on = self.retry_on
        if isinstance(retry_on, type | tuple):
            return isinstance(error, retry_on)
        return bool(retry_on(error))
