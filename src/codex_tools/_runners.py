"""Where a tool runs when not inline in the caller: worker threads and event loops,
each waited for at most the tool's deadline."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from codex_tools._call import DeadlineExceeded
from codex_tools._tool import Tool

__all__ = ["call_async", "call_in_thread", "run_coroutine"]

T = TypeVar("T")


async def call_async(tool: Tool, kwargs: dict[str, Any]) -> Any:
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
            raise DeadlineExceeded from None
        raise


def run_coroutine(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
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
    """``[output, None]`` or ``[None, error]``, for :func:`run_coroutine`."""
    try:
        return [await work, None]
    except Exception as error:  # noqa: BLE001  (re-raised by _run_coroutine)
        return [None, error]


def call_in_thread(tool: Tool, kwargs: dict[str, Any]) -> Any:
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
        raise DeadlineExceeded from None
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
