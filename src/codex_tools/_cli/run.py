"""``codex-tools run``: the auto-run loop against an OpenAI-compatible server, with the
tools of the user's module, every call printed as it happens and the metrics at the end."""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console
from rich.panel import Panel

from codex_tools import ToolDefinitionError, ToolRegistry
from codex_tools._cli import CLIError, seconds
from codex_tools._cli._calls import print_calls
from codex_tools._cli._loading import load_registry
from codex_tools._cli._table import metrics_table, printable
from codex_tools.autorun import AutoRunResult, MaxAttemptsReached, OpenAIChatModel, run_auto
from codex_tools.autorun._result import plural

__all__ = ["add_parser", "model_error", "show_result"]

_ERROR_LENGTH = 500  # characters of an error worth a line on stderr


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
        help="a dotted module or .py file with tools: the ToolRegistry that ATTR names, else "
        "its ToolRegistry, else its @tool functions, else what it registered on the default "
        "registry",
    )
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's API root, e.g. http://localhost:11434/v1 (default: "
        "$OPENAI_BASE_URL, else OpenAI)",
    )
    parser.add_argument("--api-key", metavar="KEY", help="the API key (default: $OPENAI_API_KEY)")
    parser.add_argument(
        "--instructions", metavar="TEXT", help="a system prompt for the model (default: none)"
    )
    parser.add_argument(
        "--max-attempts",
        type=_positive,
        default=8,
        metavar="N",
        help="most turns to take (default 8: run_auto's default is 3, but a model working "
        "with real tools often needs more turns)",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="most tool calls of one turn to run at once (default 8)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=60.0,
        metavar="SECONDS",
        help="most seconds to wait for each answer of the model (default 60)",
    )
    parser.set_defaults(handler=run)


def show_result(console: Console, result: AutoRunResult, registry: ToolRegistry) -> None:
    """The final response (if any), then the turns, calls and tokens of the run on one
    line, then the metrics table."""
    if result.final_response is not None:
        text = printable(result.final_response, one_line=False)
        console.print(Panel(text, title="final response"))
    usage = ", ".join(f"{name} {count:,}" for name, count in sorted(result.usage.items()))
    console.print(
        f"{plural(result.attempts, 'turn')}, {plural(len(result.tool_outputs), 'tool output')}, "
        f"{plural(len(result.tool_failures), 'tool failure')}"
        + (f"; tokens: {usage}" if usage else ""),
        highlight=False,
        markup=False,
    )
    console.print(metrics_table(registry.metrics(), console.width))


def run(namespace: argparse.Namespace) -> int:
    registry = load_registry(namespace.tools)
    try:
        import openai

        model = OpenAIChatModel(
            namespace.model,
            base_url=namespace.base_url,
            api_key=namespace.api_key,
            timeout=namespace.timeout,
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
                instructions=namespace.instructions,
                max_concurrency=namespace.max_concurrency,
            )
    except MaxAttemptsReached as error:
        result, code = error.result, 1
        console.print(str(error), style="red", markup=False, highlight=False)
    except ToolDefinitionError as error:  # a tool the model cannot be offered
        raise CLIError(printable(str(error)).plain) from None
    except KeyboardInterrupt:
        # Tools still running were cancelled and counted; their threads are left behind.
        console.print("interrupted", style="red", highlight=False)
        console.print(metrics_table(registry.metrics(), console.width))
        return 130
    except (openai.OpenAIError, ValueError) as error:
        if registry.metrics():  # the calls made before the model failed
            console.print(metrics_table(registry.metrics(), console.width))
        raise CLIError(model_error(error, namespace.timeout)) from None
    show_result(console, result, registry)
    return code


def model_error(error: Exception, timeout: float) -> str:
    """One line that says what went wrong with the model server and what to try."""
    import openai

    request = getattr(error, "request", None)
    url = "the model server" if request is None else str(request.url)
    if isinstance(error, openai.APITimeoutError):
        text = f"no answer from {url} within {timeout:g} s (see --timeout)"
    elif isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        text = f"cannot connect to {url}" + (f": {cause}" if cause else "")
    elif isinstance(error, openai.APIStatusError):
        body = error.body
        said = body.get("message") if isinstance(body, dict) else body
        text = f"{url} answered {error.status_code}" + (
            f": {said}" if isinstance(said, str) else ""
        )
        if error.status_code == 404 and "/v1/" not in url:
            text += " (does --base-url lack /v1, as in http://localhost:11434/v1?)"
    elif isinstance(error, openai.OpenAIError):
        text = f"the model request failed: {type(error).__name__}: {error}"
    else:
        text = f"cannot read the model's answer: {error}"
    return printable(text[:_ERROR_LENGTH]).plain
