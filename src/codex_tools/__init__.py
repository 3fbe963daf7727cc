"""codex-tools: observable tools for LLM agents.

A registry of tools, invoked sync or async, with per-tool metrics (counts, last error,
latency percentiles, retries) and telemetry events anyone can subscribe to. The
module-level functions act on one process-wide registry; a :class:`ToolRegistry` has the
same methods and is fully isolated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from codex_tools import telemetry
from codex_tools._errors import (
    ToolAlreadyRegisteredError,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolDisabledError,
    ToolError,
    ToolExecutionError,
    ToolNotFoundError,
    ToolTimeoutError,
)
from codex_tools._measure import MeasuredCall
from codex_tools._merge import merge_metrics
from codex_tools._registry import ToolHandle, ToolRegistry
from codex_tools._retry import RetryPolicy, exponential_backoff
from codex_tools._tool import Tool, ToolContext, tool

__all__ = [
    "MeasuredCall",
    "RetryPolicy",
    "Tool",
    "ToolAlreadyRegisteredError",
    "ToolArgumentsError",
    "ToolContext",
    "ToolDefinitionError",
    "ToolDisabledError",
    "ToolError",
    "ToolExecutionError",
    "ToolHandle",
    "ToolNotFoundError",
    "ToolRegistry",
    "ToolTimeoutError",
    "ainvoke",
    "default_registry",
    "deregister",
    "exponential_backoff",
    "invoke",
    "lookup",
    "measure",
    "merge_metrics",
    "metrics",
    "register",
    "reset_metrics",
    "telemetry",
    "tool",
    "tools",
]

__version__ = "0.1.0"

_default = ToolRegistry()


def default_registry() -> ToolRegistry:
    """The process-wide registry that the module-level functions act on."""
    return _default


def register(
    fn: Tool | Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    replace: bool = False,
) -> ToolHandle:
    """Register a tool on the default registry; see :meth:`ToolRegistry.register`."""
    return _default.register(fn, name=name, description=description, replace=replace)


def deregister(tool: ToolHandle | Tool | str) -> None:
    """Remove a tool from the default registry by handle, ``Tool`` or name."""
    _default.deregister(tool)


def lookup(name: str) -> Tool:
    """The tool called ``name`` in the default registry."""
    return _default.lookup(name)


def tools() -> list[Tool]:
    """The tools of the default registry."""
    return _default.tools()


def invoke(
    name: str,
    args: Mapping[str, Any] | str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Any:
    """Invoke a tool of the default registry; see :meth:`ToolRegistry.invoke`."""
    return _default.invoke(name, args, context)


async def ainvoke(
    name: str,
    args: Mapping[str, Any] | str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Any:
    """Invoke a tool of the default registry without blocking the event loop."""
    return await _default.ainvoke(name, args, context)


def measure(
    name: str, arguments: Any = None, context: Mapping[str, Any] | None = None
) -> MeasuredCall:
    """Count a call that runs elsewhere on the default registry; see
    :meth:`ToolRegistry.measure`."""
    return _default.measure(name, arguments, context)


def metrics(*, buckets: bool = False) -> dict[str, dict[str, Any]]:
    """The metrics snapshot of the default registry; see :meth:`ToolRegistry.metrics`."""
    return _default.metrics(buckets=buckets)


def reset_metrics() -> None:
    """Reset the metrics of the default registry."""
    _default.reset_metrics()
