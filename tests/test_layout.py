"""The shape of the code: small modules, no import cycle, no kind/technique switches outside registries."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import smoothflip

SRC = Path(smoothflip.__file__).parent
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _top_level_imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules imported when ``name`` is imported: top-level imports, not TYPE_CHECKING ones, not
    imports inside functions (those run later, when the module is already whole)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in known else base)

    visit(tree.body)
    # importing a.b.c first imports the packages a and a.b: an edge to another package's __init__
    # (not to the importer's own ancestors, which are already being imported) is an import too
    mine = {".".join(name.split(".")[:i]) for i in range(1, len(name.split(".")) + 1)}
    with_parents = set()
    for module in found:
        parts = module.split(".")
        with_parents |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)} - mine
    return {m for m in with_parents if m in known and m != name}


def test_no_source_file_is_over_600_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_module_graph_has_no_import_cycle():
    modules = _modules()
    known = set(modules)
    graph = {name: _top_level_imports(path, name, known) for name, path in modules.items()}
    # a module imports its parent packages' __init__ implicitly: those edges do not make cycles
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                dfs(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            dfs(name)
    # the executors share the planning module and never import each other
    assert "smoothflip.engine.ray_executor" not in graph["smoothflip.engine.local"]
    assert "smoothflip.engine.local" not in graph["smoothflip.engine.ray_executor"]


REGISTRIES = {"smoothflip/study/kinds.py", "smoothflip/study/conditions.py"}


def test_no_study_kind_or_technique_switch_outside_the_registries():
    from smoothflip.study.kinds import kind_names
    from smoothflip.techniques import techniques

    kinds = "|".join(map(re.escape, kind_names()))
    names = "|".join(map(re.escape, techniques()))
    switch = re.compile(
        rf"""(\bkind\s*[!=]=\s*["']({kinds})["'])|(\.loss\s*(in|[!=]=)\s*)|(\bloss\s*[!=]=\s*["']({names})["'])"""
    )
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = str(path.relative_to(SRC.parent))
        if rel in REGISTRIES or rel.startswith("smoothflip/techniques/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if switch.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
