"""A loopback Chat Completions server answering scripted replies, for the real ``openai``
client: tests assert on the requests it received.

A reply is ``(status, body)``: a body that is a string goes out as it is, as HTML; ``HANG``
answers nothing until the server stops. ``MALFORMED`` holds one reply per way a server
can get a completion wrong.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

Reply = tuple[int, Any]

#: A body that is never sent: the request hangs until the server stops.
HANG = object()


class ChatServer(http.server.ThreadingHTTPServer):
    """Answers each POST with the next scripted reply and keeps every request body."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.stopping = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: ChatServer

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.paths.append(self.path)
        self.server.requests.append(json.loads(self.rfile.read(length)))
        status, body = self.server.replies.pop(0)
        if body is HANG:
            self.server.stopping.wait()
            return
        html = isinstance(body, str)
        data = body.encode() if html else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if html else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("retry-after-ms", "1")  # the client's retry waits 1 ms, not 0.5 s
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Servers:
    """Start servers on demand (``serve(*replies)``); ``close`` stops them all."""

    def __init__(self) -> None:
        self._running: list[tuple[ChatServer, threading.Thread]] = []

    def __call__(self, *replies: Reply) -> ChatServer:
        server = ChatServer(list(replies))
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        self._running.append((server, thread))
        return server

    def close(self) -> None:
        for server, thread in self._running:
            server.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def completion(
    n: int, *calls: tuple[str, str, str], content: str | None = None, tokens: int = 10
) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}
            for call_id, name, args in calls
        ]
    return 200, {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls" if calls else "stop",
                "message": message,
            }
        ],
        "usage": {
            "prompt_tokens": tokens,
            "completion_tokens": 2,
            "total_tokens": tokens + 2,
            "prompt_tokens_details": {"cached_tokens": 1},
        },
    }


SERVER_ERROR: Reply = (500, {"error": {"message": "overloaded", "type": "server_error"}})


def malformed(change: Callable[[dict[str, Any]], object]) -> Reply:
    """A completion asking for ``add`` (id ``call_m``), spoilt by ``change``, which edits
    the body in place (what it returns is ignored)."""
    status, body = completion(1, ("call_m", "add", '{"a": 1, "b": 2}'))
    change(body)
    return status, body


def _message(body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = body["choices"][0]["message"]
    return message


def _call(body: dict[str, Any]) -> dict[str, Any]:
    call: dict[str, Any] = _message(body)["tool_calls"][0]
    return call


def _cut_off(body: dict[str, Any]) -> None:
    body["choices"][0] = {"index": 0, "finish_reason": "length",
                          "message": {"role": "assistant", "content": None}}  # fmt: skip


#: One reply per malformed completion a server may send, by name.
MALFORMED: dict[str, Reply] = {
    "html": (200, "<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"),
    "array": (200, [completion(1, content="in an array")[1]]),
    "no_choices": malformed(lambda body: body.update(choices=[])),
    "null_message": malformed(lambda body: body["choices"][0].update(message=None)),
    "call_without_function": malformed(lambda body: _call(body).pop("function")),
    "call_of_another_type": malformed(lambda body: _call(body).update(type="custom")),
    "tool_calls_not_a_list": malformed(lambda body: _message(body).update(tool_calls="add")),
    "call_not_an_object": malformed(lambda body: _message(body).update(tool_calls=["add"])),
    "function_without_name": malformed(lambda body: _call(body)["function"].pop("name")),
    "content_not_a_string": malformed(lambda body: _message(body).update(content=[1])),
    "cut_off_with_nothing_said": malformed(_cut_off),
    "only_whitespace_said": (200, completion(1, content=" \n\t ")[1]),
    "an_error_with_status_200": (200, {"error": {"message": "model 'm' not loaded"}}),
    "nested_too_deep": (200, "[" * 100_000 + "]" * 100_000),
}
