"""House rules for the layout: small files, thin pages, and a service layer without import cycles.

A newcomer should find the room for any change in one guess: no Python file outside ``tests/`` grows past
400 lines, a page script past 150, and ``services/`` imports form a DAG (a cycle means two rooms that are
really one, or a value type that belongs in a module both sides use, like ``services/refs.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400
MAX_PAGE_LINES = 150
SKIP_DIRS = {"tests", "test-artifacts", "node_modules", "__pycache__", "mlruns"}


def _python_files_outside_tests() -> list[Path]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts[:-1]
        if any(p.startswith(".") or p in SKIP_DIRS for p in parts):
            continue
        out.append(path)
    return out


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_python_file_outside_tests_exceeds_the_limit():
    files = _python_files_outside_tests()
    assert any(p.parts[-2] == "services" for p in files), "the scan found no service modules"
    too_long = {str(p.relative_to(ROOT)): n for p in files if (n := _lines(p)) > MAX_LINES}
    assert too_long == {}, f"files over {MAX_LINES} lines (split them along their seams): {too_long}"


def test_pages_are_thin():
    pages = sorted((ROOT / "pages").glob("*.py"))
    assert pages, "no pages found"
    too_long = {str(p.relative_to(ROOT)): n for p in pages if (n := _lines(p)) > MAX_PAGE_LINES}
    assert too_long == {}, f"pages over {MAX_PAGE_LINES} lines (move the work to dashboard/ or services/): {too_long}"


# --------------------------------------------------------------------------- import graph of services/
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _service_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / "services").rglob("*.py"))
            if "__pycache__" not in p.parts}


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules of ``known`` an import statement names (the deepest existing one per name)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = ".".join(p for p in (package, node.module or "") if p)
        else:
            base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in known:  # import services.a.b.Thing -> services.a.b
            name = name.rpartition(".")[0]
        if name:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the service modules it imports, top-level and inside functions alike."""
    modules = _service_modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            edges.update(_imported(node, name, path.name == "__init__.py", known))
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan, then a path)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_back(graph, comp) for comp in components]


def _path_back(graph: dict[str, set[str]], comp: list[str]) -> list[str]:
    """A shortest cycle through the component's first module: [a, b, ..., a]."""
    start, inside = comp[0], set(comp)
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & inside):
            if w == start:
                return paths[v] + [start]
            if w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return comp  # unreachable for a real component


def test_the_import_graph_sees_the_known_edges():
    graph = import_graph()
    assert "services.refs" in graph["services.serving"]
    assert "services.registry.mlflow_registry" in graph["services.composition"]  # a function-level import
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_services_have_no_import_cycle():
    cycles = _cycles(import_graph())
    assert cycles == [], "import cycles in services/ (top-level and function-level imports):\n" + "\n".join(
        " -> ".join(c) for c in cycles)


def test_no_test_starts_an_event_loop_with_asyncio_run():
    """The e2e tests run first in the same pytest process, and Playwright's sync API leaves an event loop running
    in the main thread, where ``asyncio.run`` refuses to start: tests use ``tests.streamlit_ws.run_sync`` (a thread
    of its own). A file that passes alone and fails in the whole suite is what this prevents."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "streamlit_ws.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "asyncio"):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"use tests.streamlit_ws.run_sync instead of asyncio.run: {offenders}"
