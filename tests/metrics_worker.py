"""A worker process for the cross-process tests: it makes a known mix of tool calls,
serves its metrics endpoint, and reports on stdout.

``python metrics_worker.py SEED CALLS``: ``CALLS`` rounds of calls (the mix depends on
``SEED``), then one JSON line ``{"url", "durations": {tool: [[ns, ok], ...]}}`` (each
call's duration, as the telemetry saw it), then it serves until stdin closes.
``python metrics_worker.py SEED forever``: prints the URL, then calls until killed.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import Any

from codex_tools import ToolError, ToolRegistry, telemetry
from codex_tools.contrib.prometheus import serve_metrics

registry = ToolRegistry()
durations: dict[str, list[tuple[int, bool]]] = {}


def fast(x: int) -> int:
    return x


def nap(seconds: float) -> None:
    time.sleep(seconds)


def fail(message: str) -> None:
    raise ValueError(message)


def record(event: Any, measurements: dict[str, Any], metadata: Any, config: Any) -> None:
    ok = event[-1] == "success"
    durations.setdefault(metadata["tool"], []).append((measurements["duration"], ok))


def one_round(seed: int, n: int) -> None:
    registry.invoke("fast", {"x": n})
    if n % 3 == seed % 3:
        registry.invoke("nap", {"seconds": 0.0005 * (seed + 1)})
    if n % 4 == 0:
        with contextlib.suppress(ToolError):
            registry.invoke("fail", {"message": f"worker {seed} call {n}"})


def main() -> None:
    seed, calls = int(sys.argv[1]), sys.argv[2]
    for each in (fast, nap, fail):
        registry.register(each)
    with serve_metrics(registry) as server:
        if calls == "forever":
            print(server.url, flush=True)
            n = 0
            while True:
                n += 1
                one_round(seed, n)
                time.sleep(0.02)
        telemetry.attach_many(
            "durations", [("codex", "tool", "success"), ("codex", "tool", "failure")], record
        )
        for n in range(int(calls)):
            one_round(seed, n)
        print(json.dumps({"url": server.url, "durations": durations}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
