"""``python -m codex_tools`` runs the command line."""

from codex_tools._cli import entry_point

entry_point()
