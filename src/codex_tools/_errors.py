"""The exceptions of codex-tools, all under one root::

    ToolError                       any error raised by codex-tools about a tool
    ├── ToolDefinitionError         a tool cannot be built or registered (bad name, signature)
    ├── ToolNotFoundError           no tool of that name is registered
    ├── ToolAlreadyRegisteredError  the name is taken in this registry
    ├── ToolDisabledError           the tool's ``enabled`` said no for this context
    ├── ToolArgumentsError          the arguments are not JSON or fail the schema
    └── ToolExecutionError          the tool raised; the original is ``__cause__``
        └── ToolTimeoutError        the tool ran past its ``timeout`` (also a ``TimeoutError``)

The first four are usage mistakes of the developer or the model; they never reach the
tool. The last two are about the tool's own run. ``ToolDefinitionError`` is also a
``ValueError`` and ``ToolNotFoundError`` a ``LookupError``, so code written against the
built-in families keeps working.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ToolAlreadyRegisteredError",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolDisabledError",
    "ToolError",
    "ToolExecutionError",
    "ToolNotFoundError",
    "ToolTimeoutError",
]


class ToolError(Exception):
    """Root of every codex-tools error; ``tool`` names the tool where one applies."""

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class ToolDefinitionError(ToolError, ValueError):
    """A tool cannot be built or registered as given."""


class ToolNotFoundError(ToolError, LookupError):
    """No tool of that name is registered."""


class ToolAlreadyRegisteredError(ToolError):
    """Registering would replace a tool; pass ``replace=True`` to mean it."""


class ToolDisabledError(ToolError):
    """The tool is registered but disabled for this call."""


class ToolArgumentsError(ToolError):
    """The arguments are not a mapping, not valid JSON, or fail the tool's schema.

    ``errors`` holds pydantic's structured list (``loc``, ``msg``, ``type``) when the
    schema rejected them, so an agent can tell the model what to fix.
    """

    def __init__(
        self, message: str, *, tool: str | None = None, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message, tool=tool)
        self.errors: list[dict[str, Any]] = errors or []


class ToolExecutionError(ToolError):
    """The tool raised; the original exception is ``__cause__``."""


class ToolTimeoutError(ToolExecutionError, TimeoutError):
    """The tool ran past its ``timeout``."""
