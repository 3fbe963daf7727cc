"""``codex-tools run``: the auto-run loop against an OpenAI-compatible server, with the
tools of the user's module, every call printed as it happens and the metrics at the end."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from codex_tools._cli import CLIError
from codex_tools._cli._calls import print_calls
from codex_tools._cli._loading import load_registry
from codex_tools._cli._table import metrics_table
from codex_tools.autorun import AutoRunResult, MaxAttemptsReached, OpenAIChatModel, run_auto

__all__ = ["add_parser", "summary"]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run a prompt through the auto-run loop on an OpenAI-compatible server",
        description="Ask a Chat Completions model (OpenAI, Ollama, vLLM, ...) to answer PROMPT "
        "with the tools of MODULE, running every tool call it makes.",
    )
    parser.add_argument("prompt", help="the user message")
    parser.add_argument(
        "--model", required=True, metavar="NAME", help="the model name the server knows"
    )
    parser.add_argument(
        "--tools",
        required=True,
        metavar="MODULE[:ATTR]",
        help="a dotted module or .py file whose import registers tools on the default "
        "registry, or MODULE:ATTR naming a ToolRegistry",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's API root, e.g. http://localhost:11434/v1 (default: "
        "$OPENAI_BASE_URL, else OpenAI)",
    )
    parser.add_argument("--api-key", metavar="KEY", help="the API key (default: $OPENAI_API_KEY)")
    parser.add_argument(
        "--max-attempts",
        type=_positive,
        default=8,
        metavar="N",
        help="most turns to take (default 8)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="most tool calls of one turn to run at once (default 8)",
    )
    parser.set_defaults(handler=run)


def summary(console: Console, result: AutoRunResult) -> None:
    """The turns, calls and tokens of a run, on one line."""
    usage = ", ".join(f"{name} {count:,}" for name, count in sorted(result.usage.items()))
    console.print(
        f"{result.attempts} turns, {len(result.tool_outputs)} tool outputs, "
        f"{len(result.tool_failures)} tool failures" + (f"; tokens: {usage}" if usage else ""),
        highlight=False,
    )


def run(namespace: argparse.Namespace) -> int:
    registry = load_registry(namespace.tools)
    try:
        import openai

        model = OpenAIChatModel(
            namespace.model, base_url=namespace.base_url, api_key=namespace.api_key
        )
    except ImportError as error:
        raise CLIError(str(error)) from None
    console = Console()
    code = 0
    try:
        with print_calls(console):
            result = run_auto(
                model,
                namespace.prompt,
                registry=registry,
                max_attempts=namespace.max_attempts,
                max_concurrency=namespace.max_concurrency,
            )
        console.print(Panel(escape(result.final_response or ""), title="final response"))
    except MaxAttemptsReached as error:
        result, code = error.result, 1
        console.print(f"[red]{escape(str(error))}[/red]")
    except openai.OpenAIError as error:
        raise CLIError(f"the model request failed: {type(error).__name__}: {error}") from None
    summary(console, result)
    console.print(metrics_table(registry.metrics()))
    return code
