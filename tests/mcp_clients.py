"""The real `mcp` client on a server process, in a thread of its own, so one process
serves many tests (module-scoped fixtures) of a sync or async test suite alike."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

T = TypeVar("T")
TIMEOUT = 30  # seconds for any one request; spawning a server takes about one


class Connected:
    """A connected client: ``connected("call_tool", name, args)`` runs one client method.

    ``heard`` collects what the server sent unasked; ``faults`` what the client could not
    read on the server's stdout (anything but the protocol there lands in it).
    """

    def __init__(
        self,
        portal: BlockingPortal,
        client: Client,
        errlog: Path,
        heard: list[Any],
        faults: list[Exception],
    ) -> None:
        self.portal = portal
        self.client = client
        self.errlog = errlog
        self.heard = heard
        self.faults = faults

    def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.run(lambda: getattr(self.client, method)(*args, **kwargs))

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            with anyio.fail_after(TIMEOUT):
                return await make()

        return self.portal.call(bounded)


def connect(
    stack: ExitStack, command: list[str], errlog: Path, env: dict[str, str] | None = None
) -> Connected:
    """Start ``command`` and connect to it (handshake era), until ``stack`` closes."""
    params = StdioServerParameters(
        command=command[0], args=command[1:], env={**os.environ, **(env or {})}
    )
    stderr = stack.enter_context(errlog.open("w"))
    portal = stack.enter_context(start_blocking_portal())
    heard: list[Any] = []
    faults: list[Exception] = []

    async def hear(message: Any) -> None:
        (faults if isinstance(message, Exception) else heard).append(message)

    client = Client(
        stdio_client(params, errlog=stderr),
        mode="legacy",
        read_timeout_seconds=TIMEOUT,
        message_handler=hear,
    )
    stack.enter_context(portal.wrap_async_context_manager(client))
    return Connected(portal, client, errlog, heard, faults)
