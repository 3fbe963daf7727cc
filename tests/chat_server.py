"""A loopback Chat Completions server answering scripted replies, for the real ``openai``
client: tests assert on the requests it received."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

Reply = tuple[int, dict[str, Any]]


class ChatServer(http.server.ThreadingHTTPServer):
    """Answers each POST with the next scripted reply and keeps every request body."""

    def __init__(self, replies: list[Reply]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []

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
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
