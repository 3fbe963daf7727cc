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

import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

try:
    from langchain.agents.middleware import AgentMiddleware, AgentState
    from langchain.agents.middleware.types import ToolCallRequest
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.messages import ToolCall, ToolMessage
    from langchain_core.runnables import RunnableConfig
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
    from langchain_core.utils.uuid import uuid7
    from langgraph.types import Command
except ImportError as error:
    raise ImportError(
        "codex_tools.contrib.langchain needs LangChain 1.x: pip install 'codex-tools[langchain]'"
    ) from error

from pydantic import PrivateAttr

from codex_tools import MeasuredCall, Tool, ToolError, ToolRegistry, default_registry

__all__ = ["MeteredToolMiddleware", "MeteringCallbackHandler", "structured_tools"]

ORIGINATOR = "langchain"

# The LangChain run ids of the registry tools running now, and the registry running each:
# the callback handler of that registry leaves those runs to it.
_offered: dict[UUID, ToolRegistry] = {}


def structured_tools(registry: ToolRegistry | None = None) -> list[StructuredTool]:
    """The tools of ``registry`` (the default registry if ``None``) as LangChain tools.

    A tool whose ``enabled`` is ``False`` is left out; one with a predicate is offered,
    and a call it refuses reaches the model as an error message.
    """
    registry = default_registry() if registry is None else registry
    return [
        _RegistryTool.offering(registry, tool)
        for tool in registry.tools()
        if tool.enabled is not False
    ]


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
        offered = cls(
            name=tool.name,
            description=tool.description,
            args_schema=tool.parameters,
            metadata=dict(tool.annotations) if tool.annotations else None,
            handle_tool_error=True,
        )
        offered._registry = registry
        return offered

    async def ainvoke(
        self,
        input: str | dict[str, Any] | ToolCall,
        config: RunnableConfig | None = None,
        **kwargs: Any,
    ) -> Any:
        # StructuredTool sends a tool with no ``coroutine`` to a thread running ``invoke``.
        return await BaseTool.ainvoke(self, input, config, **kwargs)

    def run(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        run_id = kwargs.pop("run_id", None) or uuid7()
        _offered[run_id] = self._registry
        try:
            return super().run(tool_input, *args, run_id=run_id, **kwargs)
        finally:
            _offered.pop(run_id, None)

    async def arun(self, tool_input: str | dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        run_id = kwargs.pop("run_id", None) or uuid7()
        _offered[run_id] = self._registry
        try:
            return await super().arun(tool_input, *args, run_id=run_id, **kwargs)
        finally:
            _offered.pop(run_id, None)

    def _to_args_and_kwargs(
        self, tool_input: str | dict[str, Any], tool_call_id: str | None
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        return (), {"arguments": tool_input, "call_id": tool_call_id}

    # LangChain hands ``config`` only to a parameter annotated exactly ``RunnableConfig``
    # (and passes None when the tool is run without one).
    def _run(self, *args: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        context = _context(kwargs["call_id"], _thread_id(config))
        try:
            return self._registry.invoke(self.name, kwargs["arguments"], context)
        except ToolError as error:
            raise ToolException(str(error)) from error

    async def _arun(self, *args: Any, config: RunnableConfig, **kwargs: Any) -> Any:
        context = _context(kwargs["call_id"], _thread_id(config))
        try:
            return await self._registry.ainvoke(self.name, kwargs["arguments"], context)
        except ToolError as error:
            raise ToolException(str(error)) from error


class MeteredToolMiddleware(AgentMiddleware[AgentState[Any], Any, Any]):
    """Meters every tool call of a ``create_agent`` agent in ``registry`` (the default
    registry if ``None``), sync and async.

    Each time the tool node runs a call counts once: list this middleware after
    ``ToolRetryMiddleware`` (inside it) to count every attempt, the second and later
    tagged ``retry`` with their attempt number. A call of a tool the agent does not have
    is left to the agent (it answers with an error message) and counted nowhere, as the
    registry counts no call of an unknown tool.
    """

    def __init__(self, registry: ToolRegistry | None = None) -> None:
        super().__init__()
        self._meter = _Meter(registry)

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        run = self._start(request)
        if run is None:
            return handler(request)
        try:
            result = handler(request)
        except BaseException as error:
            run.fail(error)
            raise
        run.end(result)
        return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        run = self._start(request)
        if run is None:
            return await handler(request)
        try:
            result = await handler(request)
        except BaseException as error:
            run.fail(error)
            raise
        run.end(result)
        return result

    def _start(self, request: ToolCallRequest) -> _Run | None:
        tool = request.tool
        if tool is None or _runs_in(tool, self._meter.registry):
            return None
        call = request.tool_call
        config = getattr(request.runtime, "config", None)
        return self._meter.start(tool.name, call["args"], call["id"], _thread_id(config))


class MeteringCallbackHandler(BaseCallbackHandler):
    """Meters the tool runs of any runnable in ``registry`` (the default registry if
    ``None``): pass it as ``config={"callbacks": [handler]}`` or in a tool's ``callbacks``.

    A run is keyed by its run id; the tool-call id, when the tool was given a tool call,
    is the ``call_id``. A tool invoked without one returns a handled error as plain
    content, which the callbacks cannot tell from an output: that run counts as a success.
    """

    run_inline = True  # called in the tool's own task or thread, so the latency is its own

    def __init__(self, registry: ToolRegistry | None = None) -> None:
        self._meter = _Meter(registry)
        self._runs: dict[UUID, _Run] = {}

    def on_tool_start(
        self,
        serialized: dict[str, Any],
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if _offered.get(run_id) is self._meter.registry:
            return
        self._runs[run_id] = self._meter.start(
            (serialized or {}).get("name") or "?",
            input_str if inputs is None else inputs,
            kwargs.get("tool_call_id"),
            (metadata or {}).get("thread_id"),
        )

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.end(output)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.pop(run_id, None)
        if run is not None:
            run.fail(error)


class _Meter:
    """What the middleware and the callback handler share: the registry, and the failed
    attempts of each tool-call id, so that a retry of the same call is tagged as one."""

    _REMEMBERED = 1024  # failed calls whose retry may still come; the oldest go first

    def __init__(self, registry: ToolRegistry | None) -> None:
        self.registry = default_registry() if registry is None else registry
        self._failed: dict[str, int] = {}
        self._lock = threading.Lock()

    def start(self, name: str, arguments: Any, call_id: str | None, thread_id: Any) -> _Run:
        attempt = 1 if call_id is None else self._failed.get(call_id, 0) + 1
        context = _context(call_id, thread_id)
        context["attempt"] = attempt
        return _Run(self, self.registry.measure(name, arguments, context), call_id, attempt)

    def ended(self, call_id: str | None, attempt: int, ok: bool) -> None:
        if call_id is None:
            return
        if ok and call_id not in self._failed:  # the common case: no lock taken
            return
        with self._lock:  # iterating to drop the oldest must not race a removal
            if ok:
                self._failed.pop(call_id, None)
                return
            self._failed[call_id] = attempt
            if len(self._failed) > self._REMEMBERED:
                del self._failed[next(iter(self._failed))]


class _Run:
    """One metered tool run, ended by what the framework made of it."""

    __slots__ = ("attempt", "call", "call_id", "meter")

    def __init__(
        self, meter: _Meter, call: MeasuredCall, call_id: str | None, attempt: int
    ) -> None:
        self.meter, self.call, self.call_id, self.attempt = meter, call, call_id, attempt

    def end(self, result: Any) -> None:
        """A ``ToolMessage(status="error")`` is a handled failure whose exception is gone."""
        if isinstance(result, ToolMessage):
            if result.status == "error":
                self.fail(ToolException(result.text))
                return
            result = result.content
        self.meter.ended(self.call_id, self.attempt, True)
        self.call.succeed(result)

    def fail(self, error: BaseException) -> None:
        self.meter.ended(self.call_id, self.attempt, False)
        self.call.fail(error)


def _runs_in(tool: BaseTool, registry: ToolRegistry) -> bool:
    """Whether ``registry`` runs (and so counts) the calls of ``tool`` itself."""
    return isinstance(tool, _RegistryTool) and tool._registry is registry


def _thread_id(config: Mapping[str, Any] | None) -> Any:
    """LangGraph's thread of a checkpointed run, if any."""
    configurable = config.get("configurable") if config else None
    return configurable.get("thread_id") if configurable else None


def _context(call_id: str | None, thread_id: Any) -> dict[str, Any]:
    context = {"call_id": call_id, "originator": ORIGINATOR}
    if thread_id is not None:
        context["thread_id"] = thread_id
    return context
