"""`MODULE[:ATTR]` to a registry, as `codex-tools mcp` (and `run --tools`) take it."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import codex_tools
from codex_tools import ToolRegistry
from codex_tools._cli import CLIError
from codex_tools._cli._loading import load_registry

TOOLS = """
    import codex_tools
    from codex_tools import ToolRegistry

    def ping() -> str:
        \"\"\"Answer pong.\"\"\"
        return "pong"

    codex_tools.register(ping, name="{name}")
    mine = ToolRegistry()
    mine.register(ping, name="mine_{name}")
    nothing = ToolRegistry()
    number = 7
"""

#: The kinds of tools a module can hold, by the step of the loading order that finds them.
PARTS = {
    "registry": "mine = ToolRegistry()\nmine.register(lambda: 'mine', name='{name}_registry')",
    "tool": "@tool(name='{name}_tool')\ndef decorated() -> str:\n    return 'tool'",
    "default": "codex_tools.register(lambda: 'default', name='{name}_default')",
    "empty": "nothing = ToolRegistry()\nnumber = 7",
}


def module_of(name: str, *parts: str) -> str:
    kinds = [PARTS[each].format(name=name) for each in parts]
    return "\n".join(["import codex_tools", "from codex_tools import ToolRegistry, tool", *kinds])


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Path]]:
    """Writes modules under tmp_path; everything they import or register is undone after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules_before = set(sys.modules)
    tools_before = {each.name for each in codex_tools.tools()}

    def write(name: str, source: str) -> Path:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return path

    yield write
    for module in set(sys.modules) - modules_before:
        del sys.modules[module]
    for each in codex_tools.tools():
        if each.name not in tools_before:
            codex_tools.deregister(each.name)


class TestFindingTheRegistry:
    @pytest.mark.parametrize(
        ("parts", "served"),
        [
            (["registry", "tool", "default", "empty"], "registry"),
            (["empty", "tool", "default", "registry"], "registry"),
            (["registry", "tool"], "registry"),
            (["registry", "default"], "registry"),
            (["tool", "default", "empty"], "tool"),
            (["default", "tool"], "tool"),
            (["tool"], "tool"),
            (["default", "empty"], "default"),
            (["default"], "default"),
        ],
    )
    def test_the_first_step_of_the_order_that_finds_tools_is_served(
        self, write_module: Callable[..., Path], parts: list[str], served: str
    ) -> None:
        name = f"order_{'_'.join(parts)}"
        path = write_module(name, module_of(name, *parts))
        registry = load_registry(str(path))
        names = [each.name for each in registry.tools()]
        if served == "default":
            assert registry is codex_tools.default_registry()
            assert f"{name}_default" in names
        else:
            assert registry is not codex_tools.default_registry()
            assert names == [f"{name}_{served}"]
        assert registry.invoke(f"{name}_{served}") == ("mine" if served == "registry" else served)

    def test_a_dotted_name_is_found_from_the_current_directory(
        self, write_module: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        package = tmp_path / "pkg_for_loading"
        package.mkdir()
        (package / "__init__.py").write_text("")
        write_module("pkg_for_loading/dotted_tools", TOOLS.format(name="dotted_ping"))
        monkeypatch.chdir(tmp_path)
        registry = load_registry("pkg_for_loading.dotted_tools")
        assert registry.invoke("mine_dotted_ping") == "pong"

    def test_attr_names_a_registry_in_the_module(self, write_module: Callable[..., Path]) -> None:
        path = write_module("attr_tools", TOOLS.format(name="attr_ping"))
        registry = load_registry(f"{path}:mine")
        assert isinstance(registry, ToolRegistry)
        assert registry is not codex_tools.default_registry()
        assert [each.name for each in registry.tools()] == ["mine_attr_ping"]

    @pytest.mark.parametrize("attr", [":second", ""])
    def test_attr_wins_over_every_other_step_and_is_needed_for_several_registries(
        self, write_module: Callable[..., Path], attr: str
    ) -> None:
        name = f"attr_first{attr[1:]}"
        source = module_of(name, "registry", "tool", "default")
        source += f"\nsecond = ToolRegistry()\nsecond.register(lambda: 2, name='{name}_second')"
        path = write_module(name, source)
        if attr:
            registry = load_registry(f"{path}{attr}")
            assert [each.name for each in registry.tools()] == [f"{name}_second"]
        else:  # neither the Tool object nor the default registry settles it
            with pytest.raises(CLIError, match=r"several registries \(mine, second\): name one"):
                load_registry(str(path))

    def test_a_module_of_tool_functions_and_no_registry_serves_them(
        self, write_module: Callable[..., Path]
    ) -> None:
        path = write_module(
            "decorated_tools",
            """
            from codex_tools import tool

            @tool
            def ping() -> str:
                \"\"\"Answer pong.\"\"\"
                return "pong"

            @tool(name="pong_back")
            def pong() -> str:
                return "ping"

            alias = ping  # one tool, however many names it has
            """,
        )
        registry = load_registry(str(path))
        assert registry is not codex_tools.default_registry()
        assert [each.name for each in registry.tools()] == ["ping", "pong_back"]
        assert registry.invoke("pong_back") == "ping"

    def test_the_one_registry_with_tools_is_served(self, write_module: Callable[..., Path]) -> None:
        path = write_module(
            "registry_tools",
            """
            from codex_tools import ToolRegistry, tool
            empty = ToolRegistry()
            tools = ToolRegistry()

            @tools.register
            @tool
            def ping() -> str:
                return "pong"
            """,
        )
        registry = load_registry(str(path))
        assert [each.name for each in registry.tools()] == ["ping"]
        assert registry is not codex_tools.default_registry()

    @pytest.mark.parametrize("stem", ["calendar", "json", "rich"])
    def test_a_file_named_like_another_module_is_loaded_and_does_not_replace_it(
        self, write_module: Callable[..., Path], stem: str
    ) -> None:
        path = write_module(
            stem, "from codex_tools import tool\n\n@tool\ndef here() -> str:\n    return 'mine'"
        )
        registry = load_registry(str(path))
        assert registry.invoke("here") == "mine"
        real = importlib.import_module(stem)
        assert real.__file__ != str(path)
        assert sys.path[0] != str(path.parent)  # its siblings come after every other module


class TestMistakes:
    @pytest.mark.parametrize(
        ("source", "suffix", "message"),
        [
            ("raise RuntimeError('no config\\nsecond line')", "", "RuntimeError: no config"),
            ("def broken(:\n    pass", "", "SyntaxError: "),
            ("import no_such_dependency_here", "", "No module named 'no_such_dependency_here'"),
            (TOOLS.format(name="p1"), ":missing", "has no attribute 'missing'"),
            (TOOLS.format(name="p2"), ":number", "is not a ToolRegistry (it is a 'int')"),
            (TOOLS.format(name="p3"), ":nothing", "has no tools"),
            ("x = 1", "", "has no tools: no @tool function, no ToolRegistry with tools"),
            (
                "from codex_tools import ToolRegistry\na, b = ToolRegistry(), ToolRegistry()\n"
                "a.register(lambda: 1, name='one')\nb.register(lambda: 2, name='two')",
                "",
                "has several registries (a, b): name one as MODULE:ATTR",
            ),
            (
                "from codex_tools import Tool\n"
                "one = Tool(name='same', fn=lambda: 1)\ntwo = Tool(name='same', fn=lambda: 2)",
                "",
                "'same' is already registered",
            ),
        ],
    )
    def test_each_is_a_one_line_cli_error(
        self, write_module: Callable[..., Path], source: str, suffix: str, message: str
    ) -> None:
        path = write_module(f"mistake_{abs(hash(source + suffix))}", source)
        with pytest.raises(CLIError) as caught:
            load_registry(f"{path}{suffix}")
        assert message in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_a_missing_file_is_named(self, tmp_path: Path) -> None:
        with pytest.raises(CLIError, match="no such file"):
            load_registry(str(tmp_path / "absent.py"))

    def test_a_missing_module_is_named(self) -> None:
        with pytest.raises(CLIError, match="No module named 'absent_module_xyz'"):
            load_registry("absent_module_xyz")
