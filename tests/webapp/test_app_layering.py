"""The webapp's apps form layers: no import cycle between any two of them, and ``webapp.core`` (audit, optimistic
concurrency, the job task base) imports none of them. Every import counts, at module level or inside a function,
so a cycle cannot hide behind a lazy import; apps above talk to apps below through signals
(``studies.signals``, ``analysis.signals``)."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[2] / "webapp"
APPS = sorted(p.parent.name for p in WEBAPP.glob("*/apps.py"))


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against its package)."""
    package = ["webapp", *path.relative_to(WEBAPP).parent.parts]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return names


def owner(module: str) -> str | None:
    """The top-level webapp package a module belongs to (an app, ``core``, or a project module such as ``urls``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "webapp" else None


def dependencies(package: str) -> dict[str, set[str]]:
    """Which other webapp packages each file of ``package`` imports (migrations are generated and left out)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in (WEBAPP / package).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for module in imported_modules(path):
            other = owner(module)
            if other is not None and other != package and (WEBAPP / other).is_dir():
                found[other].add(str(path.relative_to(WEBAPP.parent)))
    return found


def app_graph() -> dict[str, dict[str, set[str]]]:
    return {app: {dep: files for dep, files in dependencies(app).items() if dep in APPS} for app in APPS}


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """One cycle through each app that is on one (depth-first search for a path back to the start)."""
    found = []
    for start in graph:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    found.append([*path, start])
                    stack.clear()
                    break
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
    return found


def test_the_scan_sees_the_imports_between_apps():
    graph = app_graph()
    assert {"accounts", "studies", "analysis", "review", "registry", "retraining"} <= set(APPS)
    assert "studies" in graph["review"] and "analysis" in graph["review"]  # review reads studies and their runs
    assert "webapp/retraining/views.py" in graph["retraining"]["analysis"]  # re-analysis queues analyses
    assert cycles({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) != []


def test_no_import_cycle_between_apps():
    graph = app_graph()
    found = cycles(graph)
    explained = [" -> ".join(cycle) + "  (" + "; ".join(
        f"{a}->{b}: {', '.join(sorted(graph[a][b]))}" for a, b in zip(cycle, cycle[1:])) + ")" for cycle in found]
    assert not found, "import cycles between webapp apps:\n" + "\n".join(explained)


def test_core_imports_no_app():
    assert (WEBAPP / "core" / "audit.py").is_file()
    assert not set(dependencies("core")) & set(APPS), dependencies("core")
