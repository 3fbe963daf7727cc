"""Two registries with tools, so serving it takes ``registries_module.py:other``."""

from __future__ import annotations

from codex_tools import ToolRegistry


def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


def whisper(text: str) -> str:
    """Lower-case the text."""
    return text.lower()


other = ToolRegistry()
other.register(shout)
quiet = ToolRegistry()
quiet.register(whisper)
