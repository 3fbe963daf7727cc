"""``codex-tools demo``: an agent session, offline.

A scripted model plans a trip over three turns. ``flights`` fails and the model retries
it in the next turn (attempt 2, a retry), where it recovers; ``fx_rate`` retries by its
own policy within the turn; ``reviews`` times out; ``weather`` the model made up;
``hotel`` and ``convert``, first called in later turns, are first attempts. Every call is
printed as it ends, then the answer and the metrics table.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from rich.console import Console
from rich.text import Text

from codex_tools import RetryPolicy, ToolRegistry, tool
from codex_tools._cli._calls import print_calls
from codex_tools._cli._table import printable
from codex_tools._cli.run import show_result
from codex_tools.autorun import Conversation, ScriptedModel, ToolFailure, Turn, run_auto

__all__ = ["add_parser", "demo_model", "demo_registry"]

PROMPT = "Plan a weekend in Berlin from Lisbon: flights, a hotel, the cost in USD."


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run an offline agent session and print its tool calls and metrics"
    )
    parser.set_defaults(handler=run)


def demo_registry() -> ToolRegistry:
    """Travel tools with the faults a real agent meets: a flaky backend, a rate-limited
    API, a service that hangs."""
    registry = ToolRegistry()
    flights_calls = rates_calls = 0

    @tool(metadata={"backend": "flights-api"})
    async def flights(origin: str, destination: str) -> list[dict[str, Any]]:
        """Flights between two airports."""
        nonlocal flights_calls
        flights_calls += 1
        await asyncio.sleep(0.04)
        if flights_calls == 1:
            raise ConnectionError("flights-api reset the connection")
        return [{"flight": "TP544", "from": origin, "to": destination, "eur": 129}]

    @tool(retry=RetryPolicy(max_attempts=3, backoff=lambda attempt: 0.05 * attempt))
    def fx_rate(base: str, quote: str) -> float:
        """The exchange rate between two currencies."""
        nonlocal rates_calls
        rates_calls += 1
        if rates_calls == 1:
            raise RuntimeError("429 Too Many Requests")
        return 1.08 if (base, quote) == ("EUR", "USD") else 1.0

    @tool(timeout=0.2)
    async def reviews(city: str) -> list[str]:
        """Reviews of hotels in a city, from a service that sometimes hangs."""
        await asyncio.sleep(5)
        return [f"Lovely stay in {city}"]

    @tool(quick=True)
    def hotel(city: str, nights: int) -> dict[str, Any]:
        """The best-rated hotel in a city for some nights."""
        return {"hotel": "Hotel Adlon", "city": city, "nights": nights, "eur": 2 * 180}

    @tool(quick=True)
    def convert(amount: float, rate: float) -> float:
        """Convert an amount at a rate."""
        return round(amount * rate, 2)

    for each in (flights, fx_rate, reviews, hotel, convert):
        registry.register(each)
    return registry


def _call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "tool.call.required", "call_id": call_id, "tool_name": name,
            "arguments": arguments}  # fmt: skip


def _completed(tokens: int, final: str | None = None) -> dict[str, Any]:
    usage = {"input_tokens": tokens, "cached_input_tokens": tokens // 2, "output_tokens": 40}
    if final is None:
        return {"type": "turn.completed", "usage": usage, "status": "pending"}
    return {"type": "turn.completed", "usage": usage, "final_response": final}


def demo_model() -> ScriptedModel:
    """Three turns in the Codex event format, as a real model might have answered."""
    return ScriptedModel(
        [
            [
                {"type": "thread.started", "thread_id": "thread_demo"},
                {"type": "turn.started", "turn_id": "turn_1"},
                _call("call_1", "flights", origin="LIS", destination="BER"),
                _call("call_2", "fx_rate", base="EUR", quote="USD"),
                _call("call_3", "reviews", city="Berlin"),
                _call("call_4", "weather", city="Berlin"),
                _completed(812),
            ],
            [
                {"type": "turn.started", "turn_id": "turn_2"},
                _call("call_5", "flights", origin="LIS", destination="BER"),
                _call("call_6", "hotel", city="Berlin", nights=2),
                _completed(1240),
            ],
            [
                {"type": "turn.started", "turn_id": "turn_3"},
                _call("call_7", "convert", amount=129 + 360, rate=1.08),
                _completed(
                    1515,
                    "Fly TP544 Lisbon to Berlin (EUR 129) and stay two nights at Hotel Adlon "
                    "(EUR 360): USD 528.12 in all. Reviews timed out, and I have no weather "
                    "tool, so check the forecast before you pack.",
                ),
            ],
        ]
    )


class _Narrated:
    """Print what the model asks for before the calls run."""

    def __init__(self, model: ScriptedModel, console: Console) -> None:
        self._model, self._console = model, console

    async def next_turn(self, conversation: Conversation) -> Turn:
        # Calls to unknown tools emit no telemetry (no tool ran): show them from the results.
        for failure in conversation.turns[-1].results if conversation.turns else ():
            if isinstance(failure, ToolFailure) and failure.error_type == "ToolNotFoundError":
                name = printable(failure.tool)
                line = Text.assemble(("✗ ", "red"), name, " " * max(12 - name.cell_len, 0))
                self._console.print(line.append(" no such tool", "red"), overflow="fold")
        turn = await self._model.next_turn(conversation)
        asked = ", ".join(call.name for call in turn.tool_calls) or "nothing"
        line = Text.assemble((f"turn {conversation.turn}", "bold"), ": the model asks for ")
        self._console.print(line.append_text(printable(asked)))
        return turn


def run(namespace: argparse.Namespace) -> int:
    console = Console()
    registry = demo_registry()
    console.print(Text.assemble(("prompt: ", "bold"), PROMPT))
    with print_calls(console):
        result = run_auto(_Narrated(demo_model(), console), PROMPT, registry=registry)
    show_result(console, result, registry)
    return 0
