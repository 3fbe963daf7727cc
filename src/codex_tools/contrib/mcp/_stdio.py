"""MCP over this process's stdin and stdout, with nothing else on stdout, ever.

Unlike ``mcp.server.stdio``, the streams are taken for the rest of the process
(:func:`codex_tools._stdio.claim_stdio`), so text printed at exit cannot reach the
client either; and a message whose text UTF-8 cannot carry (a lone surrogate) goes out
with U+FFFD in its place instead of ending the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import stat
from collections import deque
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectSendStream
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.runner import serve_loop
from mcp.shared.message import SessionMessage

from codex_tools import ToolRegistry, __version__
from codex_tools._stdio import claim_stdio
from codex_tools.contrib.mcp._server import build_server
from codex_tools.contrib.mcp._text import clean_text

__all__ = [
    "Inbox",
    "PipeWriter",
    "aserve_stdio",
    "decode",
    "encode",
    "nonblocking",
    "parse_messages",
    "serve",
    "serve_over_stdio",
    "serve_stdio",
    "write_all",
]

logger = logging.getLogger("codex_tools.contrib.mcp")

_CHUNK = 1 << 16


async def aserve_stdio(
    registry: ToolRegistry | None = None,
    name: str = "codex-tools",
    *,
    version: str = __version__,
    instructions: str | None = None,
) -> None:
    """Serve ``registry`` over stdin and stdout until the client closes stdin.

    From the first call on, ``sys.stdout`` and the process's fd 1 point at stderr (and
    fd 0 at the null device), so a stray ``print`` in a tool, a child process it starts
    or a thread printing at exit cannot corrupt the protocol.
    """
    server = build_server(registry, name, version=version, instructions=instructions)
    await serve_over_stdio(server, server.create_initialization_options())


def serve_stdio(
    registry: ToolRegistry | None = None,
    name: str = "codex-tools",
    *,
    version: str = __version__,
    instructions: str | None = None,
) -> None:
    """Blocking :func:`aserve_stdio`, for a script's last line."""
    anyio.run(lambda: aserve_stdio(registry, name, version=version, instructions=instructions))


async def serve_over_stdio(server: Server[Any], options: InitializationOptions) -> None:
    """Run ``server`` on the claimed stdin and stdout until stdin closes."""
    wire = claim_stdio()
    inbox = Inbox()
    refusals, refused = anyio.create_memory_object_stream[SessionMessage](math.inf)
    writer = PipeWriter(wire.write_fd)

    async def run() -> None:
        try:
            await serve(server, inbox, writer, options)
        finally:
            refusals.close()  # the server is done: all its answers are written

    async with anyio.create_task_group() as tasks:
        # A bad request with an id is answered (-32600) through ``refusals``.
        tasks.start_soon(parse_messages, wire.read_fd, inbox, refusals)
        tasks.start_soon(run)
        async with refused:
            async for refusal in refused:
                await writer.write(refusal)
        tasks.cancel_scope.cancel()


async def serve(
    server: Server[Any], inbox: Inbox, writer: PipeWriter, options: InitializationOptions
) -> None:
    """``server.run(inbox, writer, options)``, with one task hop fewer per request for a
    client that opens with ``initialize``.

    ``Server.run`` picks the protocol era from the first request and then relays every
    later message to the era's loop through a task and a memory stream: two more turns
    of the event loop per message, a tenth of the proxy's instructions per call. The inbox
    shows its first request without giving it up, so a handshake-era client is served
    by the SDK's handshake loop (``serve_loop``, what ``Server.run`` would pick) reading
    the inbox itself; any other opening goes to ``Server.run``. Unlike ``Server.run``,
    such a connection does not refuse a later request carrying the 2026-07-28 envelope:
    it serves it in the era it negotiated.
    """
    first = await inbox.first_request()
    if first is None or first.method != "initialize":
        await server.run(inbox, writer, options)
        return
    try:
        async with server.lifespan(server) as state:
            await serve_loop(server, inbox, writer, lifespan_state=state, init_options=options)
    finally:
        await writer.aclose()  # as Server.run: no message from this server after it ends


class Inbox:
    """An unbounded ``mcp`` read stream that the event loop's pipe callbacks fill.

    Lighter than an anyio memory stream, whose every receive is also a checkpoint (one
    more turn of the event loop per message): here a receive waits only when nothing
    has arrived. ``send_nowait`` and ``close`` are the sender's side.
    """

    def __init__(self) -> None:
        self._items: deque[SessionMessage | Exception] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False  # nothing more will come
        self._left = False  # the receiver is gone

    def send_nowait(self, item: SessionMessage | Exception) -> None:
        if self._left:
            raise anyio.BrokenResourceError
        if self._closed:
            raise anyio.ClosedResourceError
        self._items.append(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> SessionMessage | Exception:
        while not self._items:
            if self._closed or self._left:
                raise anyio.EndOfStream
            await self._arrival()
        return self._items.popleft()

    async def first_request(self) -> types.JSONRPCRequest | None:
        """The first request to arrive, left in the inbox; ``None`` if none ever comes."""
        while True:
            for item in self._items:
                if isinstance(item, SessionMessage) and isinstance(
                    item.message, types.JSONRPCRequest
                ):
                    return item.message
            if self._closed or self._left:
                return None
            await self._arrival()

    async def _arrival(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def aclose(self) -> None:
        self._left = True
        self._items.clear()
        self._wake()

    def __aiter__(self) -> Inbox:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Inbox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def parse_messages(
    fd: int, messages: Inbox, unreadable: Inbox | MemoryObjectSendStream[SessionMessage]
) -> None:
    """Read JSON-RPC messages, one a line, from ``fd`` into ``messages`` until end of file.

    A line that is not a message but has an ``id`` becomes an error for that id in
    ``unreadable``: the answer to a bad request, or (given ``messages`` itself) the
    stand-in for a bad response, so that no request waits for ever. A peer's line with
    no usable id is answered as JSON-RPC 2.0 says, with ``"id": null`` (-32700 for text
    that is not JSON, -32600 for anything else); the same from an upstream answers
    nothing, so it is logged and dropped. Both streams must be unbounded: lines are
    handed on as they arrive.
    """
    lines = _Lines(messages, unreadable)
    try:
        if _is_pipe(fd):
            await lines.read_pipe(fd)
        else:  # a terminal or a file: its flags may be shared, so read in a thread
            while chunk := await anyio.to_thread.run_sync(
                os.read, fd, _CHUNK, abandon_on_cancel=True
            ):
                lines.data_received(chunk)
            lines.eof_received()
    finally:
        messages.close()


class _Lines(asyncio.Protocol):
    """Split what arrives into lines and each line into a message, as it arrives.

    An asyncio protocol rather than a read loop: the event loop calls it straight from
    its selector, a quarter of the cost of waiting for the pipe in a task each time.
    """

    def __init__(
        self, messages: Inbox, unreadable: Inbox | MemoryObjectSendStream[SessionMessage]
    ) -> None:
        self._messages = messages
        self._unreadable = unreadable
        self._pending: list[bytes] = []  # a line's chunks so far: joined once it ends
        self._ended = asyncio.Event()

    async def read_pipe(self, fd: int) -> None:
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(fd, "rb", buffering=0, closefd=False)
        transport, _ = await loop.connect_read_pipe(lambda: self, pipe)
        try:
            await self._ended.wait()
        finally:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if b"\n" not in data:  # a long line: no copy of all of it per chunk
            self._pending.append(data)
            return
        first, *lines, rest = data.split(b"\n")
        self._pending.append(first)
        self._line(b"".join(self._pending))
        self._pending = [rest]
        for line in lines:
            self._line(line)

    def eof_received(self) -> None:
        self._line(b"".join(self._pending))
        self._pending = []
        self._ended.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended.set()

    def _line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        line = raw.decode("utf-8", "replace")
        try:
            self._send(self._messages, SessionMessage(decode(line)))
        except ValueError as error:
            request_id, code = _id_of(line)
            if request_id is None and self._unreadable is self._messages:
                self._send(self._messages, error)  # the dispatcher logs and drops it
                return
            message = "Parse error" if code == types.PARSE_ERROR else "not a JSON-RPC message"
            problem = types.ErrorData(code=code, message=message)
            refusal = types.JSONRPCError(jsonrpc="2.0", id=request_id, error=problem)
            self._send(self._unreadable, SessionMessage(refusal))

    @staticmethod
    def _send(stream: Inbox | MemoryObjectSendStream[SessionMessage], item: Any) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            stream.send_nowait(item)


def _is_pipe(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _id_of(line: str) -> tuple[str | int | None, int]:
    """The request id of a line that is not a JSON-RPC message, if it has a usable one,
    and the error code that answers it."""
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return None, types.PARSE_ERROR
    request_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None, types.INVALID_REQUEST
    return request_id, types.INVALID_REQUEST


def decode(line: str) -> types.JSONRPCMessage:
    """One JSON-RPC message; also one that escapes a lone surrogate (``"\\ud800"``, as
    JavaScript's ``JSON.stringify`` writes it), which pydantic's parser refuses: dropped,
    it would leave its request unanswered for ever. A request whose id is no string or
    integer is a ``ValueError``: the types would read it as a notification, unanswered."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValueError as error:
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, or nested deeper than it reads
            raise error from None
        message = types.jsonrpc_message_adapter.validate_python(data, by_name=False)
    if (
        isinstance(message, types.JSONRPCNotification)
        and '"id"' in line
        and "id" in json.loads(line)
    ):
        raise ValueError("a request's id must be a string or an integer")
    return message


class PipeWriter:
    """An ``mcp`` write stream that writes each message to a pipe in the sender's own task.

    A memory stream drained by a writer task costs a task switch per message, a good
    part of what the proxy adds to a call. A message the pipe cannot take at once is
    finished under a lock, shielded (half a line would corrupt the protocol), and the
    messages sent meanwhile queue behind it in order. Once the reader is gone, sends
    raise ``BrokenResourceError``, as a memory stream whose reader left does.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = anyio.Lock(fast_acquire=True)
        self._queued = 0  # senders waiting for the pipe, in order
        self._broken = False
        self._closed = False
        nonblocking(fd)

    async def send(self, message: SessionMessage, /) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError
        await self.write(message)

    async def write(self, message: SessionMessage) -> None:
        """``send`` that still writes after ``aclose`` and drops what a gone reader
        cannot get: for answers that are not the stream owner's to send."""
        if self._broken:
            return
        data = encode(message)
        if not self._queued:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                written = 0
            except OSError:
                self._broken = True
                return
            if written == len(data):
                return
            data = data[written:]
        self._queued += 1
        try:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    if not await write_all(self._fd, data):
                        self._broken = True
        finally:
            self._queued -= 1

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> PipeWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def write_all(fd: int, data: bytes) -> bool:
    """Write all of ``data``, waiting in the event loop while a non-blocking pipe is full;
    False if the reader is gone."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            await anyio.wait_writable(fd)
            continue
        except OSError:
            return False
        view = view[written:]
    return True


def nonblocking(fd: int) -> bool:
    """Make a pipe non-blocking for the event loop; a terminal stays as it is."""
    if os.isatty(fd):
        return False
    os.set_blocking(fd, False)
    return True


def encode(message: SessionMessage) -> bytes:
    """One line of JSON for ``message``; one that cannot be encoded still answers its request."""
    body = message.message
    try:
        return body.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    except ValueError:  # pydantic's serialisation error: text UTF-8 cannot carry
        pass
    try:
        data = body.model_dump(by_alias=True, exclude_unset=True, mode="json")
        return clean_text(json.dumps(data, ensure_ascii=False)).encode() + b"\n"
    except (ValueError, TypeError):
        logger.exception("codex-tools: an MCP message could not be encoded")
    if isinstance(body, types.JSONRPCResponse | types.JSONRPCError):
        error = types.JSONRPCError(
            jsonrpc="2.0",
            id=body.id,
            error=types.ErrorData(code=types.INTERNAL_ERROR, message="response not encodable"),
        )
        return error.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n"
    return b""
