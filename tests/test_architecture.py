"""The import directions of docs/architecture.md, checked on the source.

Every ``import`` of a project module (at module level or inside a function:
a lazy import is still a dependency; only type-only imports under
``if TYPE_CHECKING:`` are left out) is an arrow from the importing room to
the imported one. The table :data:`MAY_IMPORT` is the architecture page's
"may import" column; an arrow not in it, or an import cycle between modules,
fails with the file and line of the import.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("cityeye", "detectors", "evaluation", "ingest", "streams", "simulators", "alerts", "cases", "launch")
ALERTS_ROOMS = ("pipeline", "runtime", "web", "notifiers", "sinks")

#: room -> the rooms it may import (besides itself); the table of docs/architecture.md
MAY_IMPORT: dict[str, set[str]] = {
    "cityeye": set(),
    "detectors": {"cityeye"},
    "evaluation": {"detectors", "streams", "simulators", "alerts.pipeline", "alerts.runtime", "alerts.core",
                   "cityeye"},
    "ingest": {"cityeye"},
    "streams": {"detectors", "cityeye"},
    "simulators": {"cityeye"},
    "alerts.core": {"cityeye"},
    "alerts.notifiers": {"alerts.core", "cityeye"},
    "alerts.sinks": {"alerts.notifiers", "alerts.core", "cityeye"},
    "alerts.pipeline": {"alerts.core", "cityeye"},
    "alerts.runtime": {"alerts.pipeline", "alerts.notifiers", "alerts.sinks", "alerts.core", "cityeye"},
    "alerts.web": {"alerts.runtime", "alerts.pipeline", "alerts.core", "cityeye"},
    "alerts.process": {"alerts.web", "alerts.runtime", "alerts.pipeline", "alerts.notifiers", "alerts.sinks",
                       "alerts.core", "cityeye"},
    "cases": {"alerts.sinks", "alerts.notifiers", "alerts.core", "cityeye"},
    "launch": {"cityeye", "ingest", "streams", "simulators", "alerts.process", "alerts.sinks", "evaluation",
               "detectors", "cases"},
}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    path: Path
    line: int


def project_modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _runtime_nodes(tree: ast.AST):
    """Every node except the bodies of ``if TYPE_CHECKING:`` (type-only imports are not dependencies)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def project_imports(mods: dict[str, Path]) -> list[Import]:
    out = []
    for module, path in mods.items():
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in PACKAGES:
                    continue
                target = _resolve(name, mods)
                if target and target != module and not module.startswith(target + "."):
                    out.append(Import(module, target, path, node.lineno))
    return out


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "alerts":
        return parts[0]
    if len(parts) > 1 and parts[1] in ALERTS_ROOMS:
        return f"alerts.{parts[1]}"
    if len(parts) > 1 and parts[1] in ("command", "dispatcher"):
        return "alerts.process"
    return "alerts.core"


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return project_imports(project_modules())


def test_every_room_is_in_the_table():
    rooms = {room(m) for m in project_modules()}
    assert rooms <= set(MAY_IMPORT), f"rooms missing from MAY_IMPORT / docs/architecture.md: {rooms - set(MAY_IMPORT)}"
    assert {"cityeye", "alerts.pipeline", "alerts.runtime", "alerts.web", "launch"} <= rooms


def test_imports_point_the_documented_way(imports):
    wrong = [f"{i.path.relative_to(REPO)}:{i.line}: {room(i.source)} imports {i.target} ({room(i.target)})"
             for i in imports if room(i.source) != room(i.target)
             and room(i.target) not in MAY_IMPORT[room(i.source)]]
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(wrong)


def test_no_import_cycles(imports):
    edges: dict[str, set[str]] = {}
    for i in imports:
        edges.setdefault(i.source, set()).add(i.target)
    assert cycles(edges) == []


def test_the_checker_sees_wrong_arrows_and_cycles():
    """The check itself can fail: a kernel importing upward and a two-module circle are caught."""
    assert "alerts.runtime" not in MAY_IMPORT[room("alerts.pipeline.lifecycle")]
    assert room("alerts.model") == "alerts.core" and room("alerts.web.console") == "alerts.web"
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\nelse:\n    import z\ndef f():\n    import w\n")
    seen = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert seen == {"x", "z", "w"}
