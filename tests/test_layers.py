"""The import graph of components/ and pipelines/ reads top to bottom: no module imports one that
imports it back (imports inside functions count: they are the same dependency, paid later), and no
component imports a pipeline."""

import ast
from pathlib import Path

import networkx as nx

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "pipelines")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in it; `from package import name` counts the
    submodule `package.name` where there is one, else the package."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: `from . import x` is the package itself, each further dot one level up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {name for name in found if name in modules}


def import_graph() -> nx.DiGraph:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    modules = {module_name(p) for p in files}
    graph = nx.DiGraph()
    for path in files:
        graph.add_node(module_name(path))
        for imported in imports_of(path, modules):
            if imported != module_name(path):
                graph.add_edge(module_name(path), imported)
    # Importing a module runs its packages' __init__ first.
    for name in list(graph):
        parent = name.rpartition(".")[0]
        if parent and parent in graph and parent != name:
            graph.add_edge(name, parent)
    return graph


def test_no_import_circle():
    graph = import_graph()
    # A package's __init__ importing its own submodules is how a package gathers them, not a circle.
    own = [(a, b) for a, b in graph.edges if b.startswith(a + ".")]
    graph.remove_edges_from(own)
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert circles == [], f"import circles: {circles}"


def test_no_component_imports_a_pipeline():
    graph = import_graph()
    upward = [(a, b) for a, b in graph.edges if a.startswith("components") and b.startswith("pipelines")]
    assert upward == []
