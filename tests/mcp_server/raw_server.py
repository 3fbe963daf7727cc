"""An MCP server written by hand, as other languages' servers write JSON: a lone
surrogate goes out escaped (``"\\udce9"``), as JavaScript's JSON.stringify writes it.
``name_of_file`` answers with one; ``bad_answer`` answers with a result that is not a
JSON object. Run as a script."""

from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": name, "description": "A file name.", "inputSchema": {"type": "object"}}
    for name in ("name_of_file", "bad_answer")
]


def answer(request: dict[str, object]) -> object:
    method = request["method"]
    if method == "initialize":
        return {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "0"},
        }
    if method == "tools/list":
        return {"tools": TOOLS}
    if method == "tools/call" and request["params"]["name"] == "bad_answer":  # type: ignore[index]
        return "not an object"
    if method == "tools/call":
        return {"content": [{"type": "text", "text": "caf\udce9.txt"}]}
    return {}


for line in sys.stdin:
    request = json.loads(line)
    if "id" in request:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": answer(request)}
        sys.stdout.write(json.dumps(reply) + "\n")  # ensure_ascii: "\udce9"
        sys.stdout.flush()
