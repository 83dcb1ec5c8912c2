"""The house's layering, checked on the source: no two modules of runs/ import each other
(directly or round a longer loop), and the engine never imports Django or an app."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The one allowed loop: a finished stage's task dispatches the next stage.
ALLOWED = {frozenset({"runs.dispatch", "runs.tasks"})}


def _imports(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            found.update(n for n in names if n.startswith(package + "."))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(package + "."))
    return found


def _graph(package: str) -> dict[str, set[str]]:
    modules = {
        f"{package}.{p.relative_to(ROOT / package).with_suffix('').as_posix().replace('/', '.')}": p
        for p in (ROOT / package).rglob("*.py")
        if "migrations" not in p.parts and p.name != "__init__.py"
    }
    return {
        name: {m for m in _imports(path, package) if m in modules and m != name}
        for name, path in modules.items()
    }


def _loops(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return loops


def test_no_two_modules_of_runs_import_each_other():
    loops = [loop for loop in _loops(_graph("runs")) if frozenset(loop) not in ALLOWED]
    assert loops == []


def test_the_loop_check_finds_a_loop():
    assert _loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]


def test_the_engine_imports_no_django_and_no_app():
    apps = ("django", "rest_framework", "channels", "celery", "runs", "config_profiles",
            "syschecks", "accounts", "tekton_site")  # fmt: skip
    offenders = []
    for path in (ROOT / "swarm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in apps]
    assert offenders == []
