"""The ``codex-tools`` command line.

Each subcommand lives in its own module with ``add_parser(subparsers)``, which
registers it and sets ``handler`` (a function of the parsed namespace returning
the exit code). Bad input ends in one line on stderr and a non-zero exit, never a
traceback: subcommands raise :class:`CLIError` for that.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import NoReturn

from codex_tools import __version__

__all__ = ["SUBCOMMANDS", "CLIError", "entry_point", "main"]

#: Module names under ``codex_tools._cli``, one per subcommand, in help order.
SUBCOMMANDS = ("demo", "run", "mcp", "metrics", "top")


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end in one line, like every other error of the command line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="codex-tools",
        description="Observable tools for LLM agents.",
    )
    parser.add_argument("--version", action="version", version=f"codex-tools {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in SUBCOMMANDS:
        import_module(f"codex_tools._cli.{command}").add_parser(subparsers)
    namespace = parser.parse_args(argv)
    try:
        code: int = namespace.handler(namespace)
    except CLIError as error:
        print(f"codex-tools: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


def entry_point() -> None:
    """The ``codex-tools`` script: like other Unix tools, end quietly when the reader of
    stdout goes away (``codex-tools demo | head``) instead of failing mid-print."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
