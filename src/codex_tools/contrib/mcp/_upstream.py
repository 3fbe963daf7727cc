"""The upstream MCP server of the proxy, as a process: its pipes, and how it is stopped."""

from __future__ import annotations

import contextlib
import signal
import subprocess

import anyio

from codex_tools.contrib.mcp._stdio import Inbox, parse_messages

__all__ = ["how_it_ended", "read_upstream", "signal_upstream", "stop"]

#: Seconds the upstream has to exit after its stdin closes, and again after SIGTERM.
_STOP_TIMEOUT = 2.0


async def read_upstream(fd: int, messages: Inbox, gone: anyio.Event) -> None:
    """Its messages into ``messages``; ``gone`` is set when its stdout closes, however.
    An answer that cannot be read reaches its request as an error."""
    try:
        await parse_messages(fd, messages, messages)
    finally:
        gone.set()


async def stop(upstream: subprocess.Popen[bytes]) -> None:
    """Close the upstream's stdin, then send it SIGTERM and SIGKILL, each after a bounded
    wait; the spec's order (lifecycle, shutdown)."""
    for pipe in (upstream.stdin, upstream.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()
    for signum in (None, signal.SIGTERM, signal.SIGKILL):
        if signum is not None:
            signal_upstream(upstream, signum)
        if await _exited(upstream):
            return


def signal_upstream(upstream: subprocess.Popen[bytes], signum: int) -> None:
    """Send ``signum`` to the upstream, if it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        upstream.send_signal(signum)


async def _exited(upstream: subprocess.Popen[bytes]) -> bool:
    with anyio.move_on_after(_STOP_TIMEOUT):
        while upstream.poll() is None:  # noqa: ASYNC110  (a child's exit has no event to wait on)
            await anyio.sleep(0.01)
    return upstream.returncode is not None


async def how_it_ended(upstream: subprocess.Popen[bytes]) -> str:
    if not await _exited(upstream):
        return "it closed its stdout"
    code = upstream.returncode
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"
