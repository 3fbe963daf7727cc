"""Run threads while another one keeps looking: for invariants that must hold mid-flight."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def watched(look: Callable[[], T], *workers: threading.Thread) -> list[T]:
    """Start the workers and wait for their end, calling ``look`` all the while, in a
    thread of its own; what it returned, in order."""
    seen: list[T] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(look())

    watcher = threading.Thread(target=watch)
    watcher.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    done.set()
    watcher.join()
    return seen
