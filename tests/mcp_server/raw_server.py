"""An MCP server written by hand, as other languages' servers write JSON: a lone
surrogate goes out escaped (``"\\udce9"``), as JavaScript's JSON.stringify writes it.
One tool, ``name_of_file``. Run as a script."""

from __future__ import annotations

import json
import sys

TOOL = {"name": "name_of_file", "description": "A file name.", "inputSchema": {"type": "object"}}


def answer(request: dict[str, object]) -> dict[str, object]:
    method = request["method"]
    if method == "initialize":
        return {
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "0"},
        }
    if method == "tools/list":
        return {"tools": [TOOL]}
    if method == "tools/call":
        return {"content": [{"type": "text", "text": "caf\udce9.txt"}]}
    return {}


for line in sys.stdin:
    request = json.loads(line)
    if "id" in request:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": answer(request)}
        sys.stdout.write(json.dumps(reply) + "\n")  # ensure_ascii: "\udce9"
        sys.stdout.flush()
