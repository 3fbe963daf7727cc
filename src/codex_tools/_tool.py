"""Tools: a callable plus the JSON Schema of its arguments, built from its type hints."""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import json
import re
import threading
import typing
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Literal, NotRequired, TypeVar, overload

from pydantic import ConfigDict, Field, PydanticSchemaGenerationError, TypeAdapter, with_config
from pydantic_core import SchemaValidator
from typing_extensions import TypedDict  # pydantic needs this one before Python 3.12

from codex_tools._errors import ToolDefinitionError
from codex_tools._retry import RetryPolicy

__all__ = [
    "ANNOTATION_TYPES",
    "EnabledPredicate",
    "ErrorHandler",
    "Tool",
    "ToolContext",
    "is_async_callable",
    "tool",
]

F = TypeVar("F", bound=Callable[..., Any])

#: ``enabled`` may be a bool or a predicate of the invocation context.
EnabledPredicate = Callable[["ToolContext"], bool]
#: ``on_error(error, context)`` returns an output in place of the failure, or raises.
ErrorHandler = Callable[[BaseException, "ToolContext"], Any]


class ToolContext(Mapping[str, Any]):
    """The invocation context a tool sees: the caller's context plus ``tool``,
    ``attempt`` and ``retry``. Read-only, so one tool cannot change what the next sees."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"ToolContext({self._data!r})"

    @property
    def tool(self) -> str:
        name: str = self._data["tool"]
        return name

    @property
    def attempt(self) -> int:
        attempt: int = self._data.get("attempt", 1)
        return attempt

    @property
    def retry(self) -> bool:
        return bool(self._data.get("retry"))


def _underlying(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The function that really runs: through partials, and to a callable object's method."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if not inspect.isroutine(fn) and not isinstance(fn, type):
        call: Callable[..., Any] = type(fn).__call__
        return call
    return fn


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """The one place that decides whether calling ``fn`` gives a coroutine to await."""
    return inspect.iscoroutinefunction(_underlying(fn))


# A tool name may hold anything but a class name (for the arguments' TypedDict) may not.
_NOT_IN_CLASS_NAMES = re.compile("[\x00\ud800-\udfff]")
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\s+(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and Google-style ``Args:`` lines."""
    lines = inspect.cleandoc(doc or "").splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    for line in lines:
        heading = _SECTION.match(line)
        if heading:
            section, current = heading.group(1), None
        elif section is None:
            description.append(line)
        elif section in ("Args", "Arguments", "Parameters"):
            match = _ARG_LINE.match(line)
            if match:
                current = match.group(1).lstrip("*")
                params[current] = match.group(2).strip()
            elif current and line.strip():
                params[current] = f"{params[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), params


def _json_default(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class _Signature:
    """What the registry needs to call a function with validated arguments."""

    validator: SchemaValidator
    schema: dict[str, Any]
    context_param: str | None


def _build_signature(fn: Callable[..., Any], name: str, param_docs: dict[str, str]) -> _Signature:
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(_underlying(fn), include_extras=True)
    except (TypeError, ValueError, NameError) as error:
        raise ToolDefinitionError(
            f"cannot read the signature of tool {name!r}: {error}", tool=name
        ) from error
    fields: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    context_param: str | None = None
    extra: Literal["allow", "forbid"] = "forbid"
    for param in signature.parameters.values():
        annotation = hints.get(param.name, Any)
        if annotation is ToolContext:
            context_param = param.name
            continue
        if param.kind is param.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind in (param.VAR_POSITIONAL, param.POSITIONAL_ONLY):
            raise ToolDefinitionError(
                f"tool {name!r}: parameter {param.name!r} cannot be passed by name "
                "(tools take keyword arguments from a JSON object)",
                tool=name,
            )
        if param.name in param_docs:
            annotation = Annotated[annotation, Field(description=param_docs[param.name])]
        if param.default is not param.empty:
            annotation = NotRequired[annotation]
            defaults[param.name] = _json_default(param.default)
        fields[param.name] = annotation
    make_typed_dict: Any = TypedDict
    class_name = _NOT_IN_CLASS_NAMES.sub("_", f"{name}_arguments")
    arguments = with_config(ConfigDict(extra=extra))(make_typed_dict(class_name, fields))
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(arguments)
        schema = adapter.json_schema()
    except PydanticSchemaGenerationError as error:
        raise ToolDefinitionError(
            f"tool {name!r}: unsupported parameter type: {error}", tool=name
        ) from error
    schema.pop("title", None)
    for key, default in defaults.items():
        if default is not inspect.Parameter.empty:
            schema["properties"][key]["default"] = default
    return _Signature(adapter.validator, schema, context_param)  # type: ignore[arg-type]


#: The MCP tool annotations and the type of each value (spec 2025-11-25, ``ToolAnnotations``).
ANNOTATION_TYPES: dict[str, type] = {
    "title": str,
    "readOnlyHint": bool,
    "destructiveHint": bool,
    "idempotentHint": bool,
    "openWorldHint": bool,
}


def _annotations(name: str, given: Any) -> Mapping[str, Any] | None:
    """The annotations as a read-only mapping of the MCP keys given, or None for none.

    A plain mapping is checked key by key; an ``mcp.types.ToolAnnotations`` (recognised
    without importing ``mcp``) was checked by ``mcp`` and keeps every field it has, so a
    newer peer's hints travel through unchanged.
    """
    if given is None:
        return None
    dump = getattr(given, "model_dump", None)
    if callable(dump) and type(given).__module__.startswith("mcp"):  # mcp, mcp_types
        fields = dump(exclude_none=True, by_alias=True)
        return MappingProxyType(dict(fields)) if fields else None
    if not isinstance(given, Mapping):
        raise ToolDefinitionError(
            f"tool {name!r}: annotations must be a mapping or mcp.types.ToolAnnotations, "
            f"not {type(given).__name__}",
            tool=name,
        )
    checked: dict[str, Any] = {}
    for key, value in given.items():
        expected = ANNOTATION_TYPES.get(key) if isinstance(key, str) else None
        if expected is None:
            known = ", ".join(ANNOTATION_TYPES)
            raise ToolDefinitionError(
                f"tool {name!r}: unknown annotation {key!r} (known: {known})", tool=name
            )
        if value is None:
            continue
        if type(value) is not expected:
            raise ToolDefinitionError(
                f"tool {name!r}: annotation {key!r} must be a {expected.__name__}, "
                f"not {type(value).__name__}",
                tool=name,
            )
        checked[key] = value
    return MappingProxyType(checked) if checked else None


def _humanised(name: str) -> str:
    """A description for a tool that has none: MCP clients and their conformance suite
    want one. ``get_weather`` -> ``Get weather``."""
    words = " ".join(re.split(r"[\W_]+", name)).strip()
    return words[:1].upper() + words[1:] if words else name


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ToolDefinitionError(f"a tool name must be a non-empty string, got {name!r}")
    return name


class Tool:
    """A callable the model may invoke, with what the registry needs to do it safely.

    ``parameters`` defaults to the JSON Schema derived from ``fn``'s type hints; a schema
    given by hand replaces what is advertised, while validation still follows the hints.
    """

    __slots__ = (
        "_signature",
        "annotations",
        "description",
        "enabled",
        "fn",
        "is_async",
        "metadata",
        "name",
        "on_error",
        "parameters",
        "quick",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        *,
        name: str,
        fn: Callable[..., Any],
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        enabled: bool | EnabledPredicate = True,
        on_error: ErrorHandler | None = None,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        quick: bool = False,
        annotations: Mapping[str, Any] | Any | None = None,
    ) -> None:
        name = _check_name(name)
        if not callable(fn):
            raise ToolDefinitionError(f"tool {name!r}: fn must be callable, got {fn!r}", tool=name)
        if timeout is not None and not (
            isinstance(timeout, int | float)
            and not isinstance(timeout, bool)
            and 0 < timeout <= threading.TIMEOUT_MAX  # NaN fails both; inf the second
        ):
            raise ToolDefinitionError(
                f"tool {name!r}: timeout must be a number of seconds > 0 and at most "
                f"{threading.TIMEOUT_MAX:g}, or None, got {timeout!r}",
                tool=name,
            )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ToolDefinitionError(f"tool {name!r}: retry must be a RetryPolicy", tool=name)
        doc_description, param_docs = _parse_docstring(inspect.getdoc(fn))
        self.name = name
        self.fn = fn
        if description is None:
            description = doc_description or _humanised(name)
        self.description = description
        self._signature = _build_signature(fn, name, param_docs)
        self.parameters: dict[str, Any] = (
            dict(parameters) if parameters is not None else self._signature.schema
        )
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.enabled = enabled
        self.on_error = on_error
        self.timeout = timeout
        self.retry = retry
        self.quick = quick
        #: the MCP annotations given (``title``, ``readOnlyHint``, ...), read-only; or None
        self.annotations = _annotations(name, annotations)
        self.is_async = is_async_callable(fn)

    def __repr__(self) -> str:
        return f"Tool(name={self.name!r}, fn={self.fn!r})"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function directly: unvalidated and unmeasured, as in plain Python."""
        return self.fn(*args, **kwargs)

    def _renamed(self, name: str | None, description: str | None) -> Tool:
        """A copy carrying every field over, with a new name and/or description."""
        new = copy.copy(self)
        if name is not None:
            new.name = _check_name(name)
            if description is None and self.description == _humanised(self.name):
                description = _humanised(new.name)  # it was made from the old name
        if description is not None:
            new.description = description
        new.parameters = dict(self.parameters)
        new.metadata = dict(self.metadata)
        return new


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    enabled: bool | EnabledPredicate = True,
    on_error: ErrorHandler | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    quick: bool = False,
    annotations: Mapping[str, Any] | Any | None = None,
    title: str | None = None,
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    enabled: bool | EnabledPredicate = True,
    on_error: ErrorHandler | None = None,
    timeout: float | None = None,
    retry: RetryPolicy | None = None,
    quick: bool = False,
    annotations: Mapping[str, Any] | Any | None = None,
    title: str | None = None,
    read_only: bool | None = None,
    destructive: bool | None = None,
    idempotent: bool | None = None,
    open_world: bool | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` of a function: ``@tool`` or ``@tool(name=..., ...)``.

    The name defaults to the function's name and the description to its docstring (or,
    with none, to the name in words). ``title``, ``read_only``, ``destructive``,
    ``idempotent`` and ``open_world`` are the MCP annotations ``title``,
    ``readOnlyHint``, ``destructiveHint``, ``idempotentHint`` and ``openWorldHint``.
    """
    hints = {
        "title": title,
        "readOnlyHint": read_only,
        "destructiveHint": destructive,
        "idempotentHint": idempotent,
        "openWorldHint": open_world,
    }
    hints = {key: value for key, value in hints.items() if value is not None}
    if hints:
        given = _annotations(name or "tool", annotations) or {}
        clash = [key for key in hints if key in given and given[key] != hints[key]]
        if clash:
            raise ToolDefinitionError(f"annotations given twice, differently: {clash}", tool=name)
        annotations = {**given, **hints}

    def build(function: Callable[..., Any]) -> Tool:
        return Tool(
            name=name if name is not None else getattr(function, "__name__", ""),
            fn=function,
            description=description,
            parameters=parameters,
            metadata=metadata,
            enabled=enabled,
            on_error=on_error,
            timeout=timeout,
            retry=retry,
            quick=quick,
            annotations=annotations,
        )

    return build if fn is None else build(fn)
