"""LangChain 1.x both ways: our tools offered to LangChain, and LangChain's tools metered.

::

    from langchain.agents import create_agent
    from langchain.agents.middleware import ToolRetryMiddleware
    from codex_tools.contrib.langchain import MeteredToolMiddleware, structured_tools

    agent = create_agent(
        model,
        tools=[*structured_tools(registry), *my_langchain_tools],
        middleware=[ToolRetryMiddleware(), MeteredToolMiddleware(registry)],
    )

- :func:`structured_tools` offers the registry's tools as ``StructuredTool`` objects
  with the registry's name, description and JSON Schema (``args_schema`` as a dict),
  and the MCP annotations in ``metadata`` as ``langchain-mcp-adapters`` puts them. A
  call goes through ``registry.ainvoke`` (``registry.invoke`` on LangChain's sync path)
  with the tool-call id as ``call_id`` and ``originator="langchain"``; any failure
  (bad arguments, the tool raised or timed out) reaches the model as a
  ``ToolMessage(status="error")`` carrying the error text and never ends the run.
- :class:`MeteredToolMiddleware` meters every tool call of a ``create_agent`` agent.
  The first middleware listed is the outermost, so list it *after*
  ``ToolRetryMiddleware`` to count every attempt (tagged ``retry`` from the second on).
- :class:`MeteringCallbackHandler` meters the tool runs of any runnable it is passed
  to (``config={"callbacks": [handler]}``).

A tool that handles its error (``ToolException`` with ``handle_tool_error``) shows the
middleware and the callbacks only a ``ToolMessage(status="error")``, the exception
gone: that counts as a failure of type ``ToolException`` with the message's text.
Use the middleware or the handler for an agent, not both: each counts what it sees.
A tool from :func:`structured_tools` is counted once, by the registry that runs it:
the middleware and the handler of that same registry leave it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

try:
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
    from langchain_core.utils.uuid import uuid7
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.langchain needs LangChain 1.x: pip install 'codex-tools[langchain]'"
    ) from error

from pydantic import PrivateAttr

from codex_tools import Tool, ToolError, ToolRegistry, default_registry

__all__ = ["structured_tools"]

ORIGINATOR = "langchain"

# The LangChain run ids of the registry tools running now, and the registry running each:
# the callback handler of that registry leaves those runs to it.
_offered: dict[UUID, ToolRegistry] = {}


def structured_tools(registry: ToolRegistry | None = None) -> list[StructuredTool]:
    """The tools of ``registry`` (the default registry if ``None``) as LangChain tools."""
    registry = default_registry() if registry is None else registry
    return [_RegistryTool.offering(registry, tool) for tool in registry.tools()]


class _RegistryTool(StructuredTool):
    """A registry tool as LangChain sees it; the registry validates, runs and counts it.

    ``BaseTool.run``/``arun`` know the tool-call id but do not hand it to ``_run``/``_arun``;
    ``_to_args_and_kwargs``, which receives it, passes it on together with the arguments
    unparsed (the registry validates them, JSON strings included), so no argument of the
    tool can collide with the ``config`` LangChain adds.
    """

    _registry: ToolRegistry = PrivateAttr()

    @classmethod
    def offering(cls, registry: ToolRegistry, tool: Tool) -> _RegistryTool:
        annotations = getattr(tool, "annotations", None)
        offered = cls(
            name=tool.name,
            description=tool.description,
            args_schema=tool.parameters,
            metadata=dict(annotations) if annotations else None,
            handle_tool_error=True,
        )
        offered._registry = registry
        return offered

    async def ainvoke(
        self, input: str | dict[str, Any] | Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Any:
        # StructuredTool sends a tool with no ``coroutine`` to a thread running ``invoke``.
        return await BaseTool.ainvoke(self, input, config, **kwargs)

    def run(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        run_id = kwargs.pop("run_id", None) or uuid7()
        _offered[run_id] = self._registry
        try:
            return super().run(tool_input, *args, run_id=run_id, **kwargs)
        finally:
            del _offered[run_id]

    async def arun(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        run_id = kwargs.pop("run_id", None) or uuid7()
        _offered[run_id] = self._registry
        try:
            return await super().arun(tool_input, *args, run_id=run_id, **kwargs)
        finally:
            del _offered[run_id]

    def _to_args_and_kwargs(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        return (), {"arguments": tool_input, "call_id": tool_call_id}

    def _run(self, *args: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        context = _context(kwargs["call_id"], config)
        try:
            return self._registry.invoke(self.name, kwargs["arguments"], context)
        except ToolError as error:
            raise ToolException(str(error)) from error

    async def _arun(self, *args: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        context = _context(kwargs["call_id"], config)
        try:
            return await self._registry.ainvoke(self.name, kwargs["arguments"], context)
        except ToolError as error:
            raise ToolException(str(error)) from error


def _context(call_id: str | None, config: Mapping[str, Any]) -> dict[str, Any]:
    """The registry context of a call: LangGraph's thread (of a checkpointed run) kept."""
    context = {"call_id": call_id, "originator": ORIGINATOR}
    configurable = config.get("configurable")
    if configurable and "thread_id" in configurable:
        context["thread_id"] = configurable["thread_id"]
    return context
