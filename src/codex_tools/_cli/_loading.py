"""Find the tools a command should serve or run: ``MODULE[:ATTR]`` to a registry.

``MODULE`` is a dotted module name (looked up from the current directory first, as
``python -m`` would) or the path of a ``.py`` file. Importing it is expected to register
tools on the default registry, unless ``ATTR`` names a :class:`ToolRegistry` in it.
Every way this can go wrong ends in a one-line :class:`CLIError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from codex_tools import ToolRegistry, default_registry
from codex_tools._cli import CLIError

__all__ = ["load_registry"]


def load_registry(spec: str) -> ToolRegistry:
    """The registry named by ``MODULE[:ATTR]``, with at least one tool in it."""
    target, attr = _split(spec)
    module = _import(target)
    if attr is None:
        registry = default_registry()
        empty = f"{target!r} registered no tools on the default registry; name a ToolRegistry"
        empty += " with MODULE:ATTR"
    else:
        try:
            registry = getattr(module, attr)
        except AttributeError:
            raise CLIError(f"module {target!r} has no attribute {attr!r}") from None
        if not isinstance(registry, ToolRegistry):
            kind = type(registry).__name__
            raise CLIError(f"{spec!r} is not a ToolRegistry (it is a {kind!r})")
        empty = f"the registry {spec!r} has no tools"
    if not registry.tools():
        raise CLIError(empty)
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
    # A file named like an imported module (json.py) must not replace it in sys.modules.
    name = path.stem if path.stem not in sys.modules else f"_codex_tools_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {str(path)!r}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    # Like `python FILE`: the file's siblings are importable, and the module is findable by name
    # while it runs (dataclasses and pickling look it up in sys.modules).
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
