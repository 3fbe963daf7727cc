"""Find the tools a command should serve or run: ``MODULE[:ATTR]`` to a registry.

``MODULE`` is a dotted module name (looked up from the current directory first, as
``python -m`` would) or the path of a ``.py`` file. The tools are, in this order:

1. the :class:`ToolRegistry` that ``ATTR`` names;
2. the one :class:`ToolRegistry` in the module that holds tools (with several, ``ATTR``
   must say which; an empty one does not count);
3. every :class:`Tool` object at the module's top level (``@tool`` functions), in a
   registry of their own;
4. what importing the module registered on the default registry.

The module's own objects come first: they say exactly what it offers, while the default
registry may also hold what its imports registered.

Every way this can go wrong ends in a one-line :class:`CLIError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from codex_tools import Tool, ToolError, ToolRegistry, default_registry
from codex_tools._cli import CLIError

__all__ = ["load_registry"]


def load_registry(spec: str) -> ToolRegistry:
    """The registry named by ``MODULE[:ATTR]``, with at least one tool in it."""
    target, attr = _split(spec)
    default = default_registry()
    before = {each.name for each in default.tools()}
    module = _import(target)
    if attr is not None:
        return _named_registry(module, target, attr)
    found = vars(module).items()
    registries = {name: value for name, value in found if isinstance(value, ToolRegistry)}
    filled = [name for name, registry in registries.items() if registry.tools()]
    if len(filled) > 1:
        names = ", ".join(filled)
        raise CLIError(f"{target!r} has several registries ({names}): name one as MODULE:ATTR")
    if filled:
        return registries[filled[0]]
    tools = {id(value): value for _, value in found if isinstance(value, Tool)}
    if tools:
        return _registry_of(target, tools.values())
    if {each.name for each in default.tools()} - before:
        return default
    raise CLIError(
        f"{target!r} has no tools: no @tool function, no ToolRegistry with tools, "
        "nothing registered on the default registry"
    )


def _registry_of(target: str, tools: Iterable[Tool]) -> ToolRegistry:
    registry = ToolRegistry()
    for each in tools:
        try:
            registry.register(each)
        except ToolError as error:  # two Tool objects of one name
            raise CLIError(f"{target!r}: {error}") from None
    return registry


def _named_registry(module: ModuleType, target: str, attr: str) -> ToolRegistry:
    try:
        registry = getattr(module, attr)
    except AttributeError:
        raise CLIError(f"module {target!r} has no attribute {attr!r}") from None
    if not isinstance(registry, ToolRegistry):
        kind = type(registry).__name__
        raise CLIError(f"'{target}:{attr}' is not a ToolRegistry (it is a {kind!r})")
    if not registry.tools():
        raise CLIError(f"the registry '{target}:{attr}' has no tools")
    return registry


def _split(spec: str) -> tuple[str, str | None]:
    # rpartition keeps a Windows drive letter ("C:\\tools.py") in the module part.
    target, colon, attr = spec.rpartition(":")
    if colon and target and attr.isidentifier():
        return target, attr
    if not spec:
        raise CLIError("no module given")
    return spec, None


def _import(target: str) -> ModuleType:
    path = Path(target)
    is_file = target.endswith(".py") or os.sep in target or "/" in target
    try:
        if is_file:
            return _import_file(path)
        # A console script does not put the current directory on sys.path; `python -m` does.
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(target)
    except CLIError:
        raise
    except ModuleNotFoundError as error:
        raise CLIError(f"cannot import {target!r}: {error}") from None
    except Exception as error:  # noqa: BLE001 - any failure of the user's module is reported
        first_line = (str(error).splitlines() or [""])[0]
        raise CLIError(f"cannot import {target!r}: {type(error).__name__}: {first_line}") from None


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise CLIError(f"no such file: {str(path)!r}")
    # A file named like another module (calendar.py, ssl.py) must not stand in for it when
    # that module is imported later, by the command itself or by the tools.
    taken = path.stem in sys.modules or path.stem in sys.stdlib_module_names
    if not taken and path.stem.isidentifier():
        taken = importlib.util.find_spec(path.stem) is not None
    name = f"_codex_tools_{path.stem}" if taken else path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {str(path)!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    # As with `python FILE`, the file's siblings are importable, but after every other module
    # (a sibling ssl.py must not replace the real one); and the module is findable by name
    # while it runs (dataclasses and pickling look it up in sys.modules).
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
