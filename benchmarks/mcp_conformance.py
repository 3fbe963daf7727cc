"""``python -m benchmarks.mcp_conformance``: the official MCP conformance suite against
``build_server(...).streamable_http_app()``, scenario by scenario.

The suite (npm ``@modelcontextprotocol/conformance``) needs Node 22 or later; both are
installed with npm into ``.conformance/`` on the first run (npm's ``node`` package
brings the runtime). Without npm, or offline, the run says so and is skipped. The
scenarios that fail need what codex-tools does not serve: logging, completions,
sampling, elicitation, resources and prompts.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from benchmarks._conformance_tools import conformance
from codex_tools.contrib.mcp import build_server

HERE = Path(__file__).resolve().parent.parent / ".conformance"
PACKAGES = ["node@22", "@modelcontextprotocol/conformance"]


def main() -> int:
    logging.getLogger("mcp").setLevel(logging.ERROR)  # the suite's hostile requests, refused
    suite = _suite()
    if suite is None:
        print("MCP conformance: skipped (npm could not install Node 22 and the suite)")
        return 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_server(conformance, "codex-tools-conformance").streamable_http_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with tempfile.TemporaryDirectory() as out:
            env = {"PATH": f"{suite.parent}:/usr/bin:/bin"}
            url = f"http://127.0.0.1:{port}/mcp"
            for suite_name in ("active", "pending"):
                subprocess.run(
                    [str(suite), "server", "--url", url, "--suite", suite_name, "-o", out],
                    env=env,
                    capture_output=True,
                    timeout=600,
                    check=False,
                )
            passed, failed, unchecked = _results(Path(out))
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    ran = len(passed) + len(failed) + len(unchecked)
    print(f"MCP conformance: {len(passed)} of {ran} scenarios pass")
    for label, scenarios in (("pass", passed), ("fail", failed), ("no checks", unchecked)):
        if scenarios:
            print(f"  {label}: {', '.join(sorted(scenarios))}")
    return 0


def _suite() -> Path | None:
    """The suite's command, installed with npm if need be; None if that cannot be done."""
    suite = HERE / "node_modules" / ".bin" / "conformance"
    if not suite.exists() and shutil.which("npm"):
        subprocess.run(
            ["npm", "install", "--prefix", str(HERE), "--no-audit", "--no-fund", *PACKAGES],
            capture_output=True,
            timeout=600,
            check=False,
        )
    return suite if suite.exists() else None


def _results(out: Path) -> tuple[set[str], set[str], set[str]]:
    """Scenarios whose checks all succeeded, those with a failed check, those with none."""
    outcomes: dict[str, set[str]] = {"pass": set(), "fail": set(), "none": set()}
    for checks in out.glob("server-*/checks.json"):
        # server-<scenario>-<timestamp with five dashes>
        scenario = checks.parent.name.removeprefix("server-").rsplit("-", 6)[0]
        statuses = {check["status"] for check in json.loads(checks.read_text())}
        outcome = "none" if not statuses else "pass" if statuses == {"SUCCESS"} else "fail"
        outcomes[outcome].add(scenario)
    return outcomes["pass"], outcomes["fail"], outcomes["none"]


if __name__ == "__main__":
    sys.exit(main())
