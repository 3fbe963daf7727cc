"""Where a tool runs when not inline in the caller, and how long the caller waits for it.

A timeout bounds the caller's wait, whatever the tool does. Python cannot stop a thread,
so a sync tool past its deadline runs on, abandoned; everything here is arranged so that
such a thread delays nobody:

- Sync tools run on our own pool of daemon worker threads, never on an event loop's
  default executor: ``asyncio.run`` waits for that executor at shutdown, and its ~32
  threads, once stuck, starve every other sync tool. A worker whose call is abandoned
  leaves the pool and is replaced; it ends when the tool returns. Daemon threads are
  never joined at interpreter exit (``concurrent.futures`` threads are).
- Abandoned threads are bounded: a tool with :data:`MAX_ABANDONED_PER_TOOL` calls still
  running past their deadline (or all tools together with :data:`MAX_ABANDONED`) starts
  no thread: the call fails at once with a timeout, counted as a failure, until one of
  them ends.
- A coroutine run from sync code (``invoke`` of an async tool) runs on a loop whose
  default executor is this pool and which does not wait for it at shutdown, so an
  ``asyncio.to_thread`` left running by a cancelled tool does not hold the caller either.
  With a timeout, the loop itself runs on a worker, so that even a coroutine blocking
  its loop cannot hold the caller past the deadline.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import functools
import os
import signal
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from codex_tools._call import FAILURES, DeadlineExceeded
from codex_tools._tool import Tool

__all__ = [
    "MAX_ABANDONED",
    "MAX_ABANDONED_PER_TOOL",
    "MAX_WORKERS",
    "call_async",
    "call_in_thread",
    "new_loop",
    "new_server_loop",
    "retire_idle",
    "run",
    "run_coroutine",
]

T = TypeVar("T")

#: Worker threads running calls that someone still waits for; more calls queue.
MAX_WORKERS = 32
#: Calls of one tool still running past their deadline before its calls fail fast.
MAX_ABANDONED_PER_TOOL = 16
#: Calls of all tools still running past their deadline before every call fails fast.
MAX_ABANDONED = 256
#: How long past its deadline an async tool run by ``invoke`` is waited for: its loop
#: cancels it at the deadline, and only one that blocks its own loop takes longer.
GRACE_SECONDS = 0.1
#: An idle worker ends after this long without a call.
IDLE_SECONDS = 30.0


_PENDING, _RUNNING, _DONE, _CANCELLED, _ABANDONED = range(5)

#: Process signals a worker blocks, so that the kernel delivers them to a thread that
#: does not block them, the main thread above all. Delivered to a worker (asleep in a
#: tool), a Ctrl-C went unnoticed: the main thread, asleep in its event loop's select,
#: was never woken to run the handler.
_STEERED = (
    {
        getattr(signal, name)
        for name in (
            "SIGINT",
            "SIGTERM",
            "SIGHUP",
            "SIGQUIT",
            "SIGUSR1",
            "SIGUSR2",
            "SIGALRM",
            "SIGCHLD",
            "SIGWINCH",
        )
        if hasattr(signal, name)
    }
    if hasattr(signal, "pthread_sigmask")
    else set()
)

_lock = threading.Lock()
_idle: list[_Worker] = []
_pending: collections.deque[_Job] = collections.deque()
_live = 0  # workers counted against MAX_WORKERS: idle ones and those whose call is awaited
_abandoned: dict[object, int] = {}  # owner -> its calls running past their deadline
_abandoned_total = 0


class _Job:
    """A call handed to a worker; its state changes under ``_lock``.

    Cancelled while pending, it never runs. Cancelled while running (its caller stopped
    waiting: a deadline, a cancelled task), it is abandoned: it counts against its owner
    until it ends, and its worker leaves the pool, which may start another.

    The worker stores the outcome, drops every reference it has to it, and only then
    calls ``notify``: the caller, which reads the outcome once, is then the only holder
    of what the tool returned or raised.
    """

    __slots__ = ("error", "function", "notify", "output", "owner", "state")

    def __init__(
        self, function: Callable[[], Any], owner: object, notify: Callable[[], object]
    ) -> None:
        self.function: Callable[[], Any] | None = function
        self.owner = owner
        self.notify = notify
        self.state = _PENDING
        self.output: Any = None
        self.error: BaseException | None = None

    def cancel(self) -> bool:
        """Stop waiting for the job: False if it has ended already (read its outcome)."""
        global _live, _abandoned_total
        with _lock:
            if self.state == _DONE:
                return False
            if self.state == _PENDING:
                self.state = _CANCELLED
            if self.state != _RUNNING:  # cancelled or abandoned, now or before
                return True
            self.state = _ABANDONED
            _abandoned[self.owner] = _abandoned.get(self.owner, 0) + 1
            _abandoned_total += 1
            _live -= 1
            replacement = _take_pending()
            if replacement is not None:
                _live += 1
        if replacement is not None:
            _start(replacement)
        return True

    def outcome(self) -> Any:
        """What the function returned, or raise what it raised; read once."""
        error, self.error = self.error, None
        output, self.output = self.output, None
        if error is None:
            return output
        try:
            raise error
        finally:
            del error, self  # the traceback holds this frame


class _Worker:
    """One daemon thread of the pool, handed jobs one at a time through ``wake``."""

    __slots__ = ("job", "wake")

    def __init__(self, job: _Job) -> None:
        self.job: _Job | None = job
        self.wake = threading.Lock()
        self.wake.acquire()

    def run(self) -> None:
        if _STEERED:  # Python runs handlers in the main thread: let the kernel wake it
            signal.pthread_sigmask(signal.SIG_BLOCK, _STEERED)
        while self.job is not None:
            if self._run_one():
                return  # its caller gave up on it: the pool replaced this thread
            self._next()

    def _run_one(self) -> bool:
        """Run the job and publish its outcome, keeping no reference to either; whether
        it was abandoned meanwhile."""
        job, self.job = self.job, None
        assert job is not None
        with _lock:
            if job.state != _PENDING:  # cancelled before it started
                return False
            # Checked again here: a burst of calls queued before the first were abandoned
            refused = _refusal(job.owner)
            job.state = _DONE if refused else _RUNNING
        function, job.function = job.function, None  # what it holds goes as it ends
        assert function is not None
        if refused:
            job.error = DeadlineExceeded(refused)
        else:
            try:
                job.output = function()
            except BaseException as error:  # noqa: BLE001  (handed to the waiting caller)
                job.error = error
                del error
        del function
        with _lock:
            abandoned = job.state == _ABANDONED
            if abandoned:
                _release(job.owner)
            job.state = _DONE
        notify = job.notify
        del job
        notify()
        return abandoned

    def _next(self) -> None:
        """Take the next job, or wait idle for one; ``job`` stays None to end the thread."""
        global _live
        with _lock:
            self.job = _take_pending()
            if self.job is not None:
                return
            _idle.append(self)
        if self.wake.acquire(timeout=IDLE_SECONDS):
            return
        with _lock:
            if self in _idle:
                _idle.remove(self)
                _live -= 1
                return
        self.wake.acquire()  # a job was handed over as the wait ran out


def _take_pending() -> _Job | None:
    """The next pending job not cancelled meanwhile (``_lock`` held)."""
    while _pending:
        job = _pending.popleft()
        if job.state == _PENDING:
            return job
    return None


def _refusal(owner: object) -> str | None:
    """Why a call of ``owner`` may not start a thread now, if it may not."""
    if _abandoned_total < MAX_ABANDONED and _abandoned.get(owner, 0) < MAX_ABANDONED_PER_TOOL:
        return None
    name = owner.name if isinstance(owner, Tool) else "this tool"
    return (
        f"{name!r} has too many calls still running past their timeout "
        f"({_abandoned.get(owner, 0)} of its own, {_abandoned_total} in all): "
        "no thread is started until one ends"
    )


def _release(owner: object) -> None:
    """An abandoned call ended (``_lock`` held)."""
    global _abandoned_total
    _abandoned_total -= 1
    left = _abandoned[owner] - 1
    if left:
        _abandoned[owner] = left
    else:
        del _abandoned[owner]


def _start(job: _Job) -> None:
    global _live
    thread = threading.Thread(target=_Worker(job).run, name="codex-tools-worker", daemon=True)
    try:
        thread.start()
    except BaseException as error:  # noqa: BLE001  (no thread to be had: the call fails)
        with _lock:
            _live -= 1
            job.state = _DONE
        job.error = error
        del error
        job.notify()


def submit(
    function: Callable[[], Any],
    owner: object,
    notify: Callable[[], object],
    *,
    copy_context: bool = True,
) -> _Job:
    """Run ``function`` on a worker (under a copy of this context), then call ``notify``
    from there; ``owner`` is what the call counts against if abandoned (a
    :class:`Tool`, or None). Past the bounds of abandoned calls, it starts nothing and
    raises :class:`DeadlineExceeded`."""
    refused = _refusal(owner)
    if refused:
        raise DeadlineExceeded(refused)
    if copy_context:
        function = functools.partial(contextvars.copy_context().run, function)
    job = _Job(function, owner, notify)
    global _live
    with _lock:
        if _idle:
            worker = _idle.pop()
            worker.job = job
            worker.wake.release()
            return job
        if _live >= MAX_WORKERS:
            _pending.append(job)
            return job
        _live += 1
    _start(job)
    return job


def _wait(function: Callable[[], Any], owner: Tool, timeout: float | None) -> Any:
    """Run ``function`` on a worker and wait at most ``timeout`` for its outcome."""
    done = threading.Lock()
    done.acquire()
    job = submit(function, owner, done.release)
    try:
        finished = done.acquire(timeout=-1 if timeout is None else timeout)
    except BaseException:  # an interrupt (Ctrl-C) while waiting: nobody waits any more
        job.cancel()
        raise
    if not finished and job.cancel():
        raise DeadlineExceeded
    return job.outcome()


async def _await(function: Callable[[], Any], tool: Tool) -> Any:
    """``_wait`` for a coroutine; a cancelled caller abandons the call too."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    job = submit(function, tool, functools.partial(_wake, loop, waiter))
    try:
        if tool.timeout is None:
            await waiter
        else:
            scope = asyncio.timeout(tool.timeout)
            try:
                async with scope:
                    await waiter
            except TimeoutError:
                if scope.expired() and job.cancel():
                    raise DeadlineExceeded from None
        return job.outcome()
    finally:
        job.cancel()  # cancelled while waiting: now, not when the thread ends


def _wake(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any]) -> None:
    """From the worker: the job ended. The loop may be closed (its caller gave up)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_set_done, waiter)


def _set_done(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _Executor(concurrent.futures.ThreadPoolExecutor):
    """The default executor of the loops we run (``asyncio.to_thread`` in a tool): the
    pool's daemon threads, abandoned calls counting against the tool, and nothing to
    wait for at shutdown. A ``ThreadPoolExecutor`` only because ``set_default_executor``
    accepts nothing else; none of its own machinery is used."""

    def __init__(self, owner: object) -> None:
        self._owner = owner

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        future = _ExecutorFuture[T]()

        def work() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as error:  # noqa: BLE001  (handed to the awaiting tool)
                    future.set_exception(error)
                    del error

        future.job = submit(work, self._owner, _nothing, copy_context=False)  # to_thread did
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: the pool outlives every loop, and nobody waits for it."""


class _ExecutorFuture(concurrent.futures.Future[T]):
    job: _Job

    def cancel(self) -> bool:
        if super().cancel():
            return True
        self.job.cancel()  # running: abandoned
        return False


def _nothing() -> None:
    pass


class _Loop(asyncio.SelectorEventLoop):
    def run_forever(self) -> None:
        """Run with a signal wakeup fd in the main thread, as ``add_signal_handler`` sets.

        ``asyncio.Runner`` handles Ctrl-C with ``signal.signal``, whose handler runs only
        when the main thread runs Python code. A signal that lands just before the loop
        blocks in ``select`` (a worker just handed a job held the GIL until then) was left
        pending, the loop asleep for good. The wakeup byte makes ``select`` return.
        """
        previous = None
        if threading.current_thread() is threading.main_thread():
            self_pipe: socket.socket = getattr(self, "_csock")  # noqa: B009  (private)
            previous = signal.set_wakeup_fd(self_pipe.fileno(), warn_on_full_buffer=False)
        try:
            super().run_forever()
        finally:
            if previous is not None:
                signal.set_wakeup_fd(previous)

    async def shutdown_default_executor(self) -> None:
        """Do not wait for threads a cancelled tool left running."""


def new_loop(owner: object = None) -> asyncio.AbstractEventLoop:
    """An event loop whose ``asyncio.to_thread`` runs on the pool (abandoned calls counting
    against ``owner``), that is never waited for at shutdown, and that wakes on a signal:
    the ``loop_factory`` for ``asyncio.Runner`` (or ``anyio.run``'s ``backend_options``)
    of a host that must exit though a tool left a thread stuck."""
    loop = _Loop()
    loop.set_default_executor(_Executor(owner))
    return loop


def new_server_loop() -> asyncio.AbstractEventLoop:
    """:func:`new_loop` for a stdio server, on uvloop where it is installed (the ``mcp``
    extra brings it): a message costs the ``codex-tools proxy`` a third less time in the
    event loop, the larger part of what it adds to a call. uvloop wakes on a signal by
    itself, and the server ends the process from inside the loop, never shutting it down.
    """
    try:
        import uvloop
    except ImportError:
        return new_loop()
    loop = uvloop.new_event_loop()
    loop.set_default_executor(_Executor(None))
    return loop


def run(coroutine: Coroutine[Any, Any, T], owner: object = None) -> T:
    """``asyncio.run`` on :func:`new_loop`: threads started with ``asyncio.to_thread``
    and abandoned (a tool cancelled at its deadline) do not hold the return."""
    with asyncio.Runner(loop_factory=functools.partial(new_loop, owner)) as runner:
        return runner.run(coroutine)


def call_in_thread(tool: Tool, kwargs: dict[str, Any]) -> Any:
    """A sync tool with a timeout: the caller waits at most ``timeout``; the thread runs
    on to completion in the background (Python cannot stop it) and its result is dropped."""
    return _wait(functools.partial(tool.fn, **kwargs), tool, tool.timeout)


async def call_async(tool: Tool, kwargs: dict[str, Any]) -> Any:
    """Await the tool (a sync one on a worker), until its deadline."""
    if not tool.is_async:
        return await _await(functools.partial(tool.fn, **kwargs), tool)
    work: Coroutine[Any, Any, Any] = tool.fn(**kwargs)
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


def run_coroutine(tool: Tool, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the tool's coroutine to completion from sync code: on a worker if this thread
    already runs an event loop (which cannot be re-entered) or the tool has a deadline
    (so that the caller returns at it whatever the coroutine does), else here.

    The tool's exception leaves the loop as a value in a box that is emptied once read:
    raised out of the runner, or left in the finished task's result, it would be
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
    if in_loop or tool.timeout is not None:
        wait = None if tool.timeout is None else tool.timeout + GRACE_SECONDS
        box = _wait(lambda: run(_caught(make()), tool), tool, wait)
    else:
        box = run(_caught(make()), tool)
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
    except FAILURES as error:  # re-raised by run_coroutine
        return [None, error]


def retire_idle() -> None:
    """End the idle workers now rather than after :data:`IDLE_SECONDS` (for a test that
    checks it left no thread behind); calls still running are untouched."""
    global _live
    with _lock:
        idle = list(_idle)
        _idle.clear()
        _live -= len(idle)
    for worker in idle:
        worker.job = None
        worker.wake.release()  # it wakes with no job, and its thread ends


def _after_fork_in_child() -> None:
    """Only the forking thread exists in the child: no worker, nothing abandoned."""
    global _lock, _live, _abandoned_total
    _lock = threading.Lock()
    _idle.clear()
    _pending.clear()
    _abandoned.clear()
    _live = _abandoned_total = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
