"""clipgen's modules import one another in one direction only.

The graph is read from the source with `ast`, function-level imports included: an import moved
into a function to dodge a circular-import error hides a circle, it does not remove it.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "clipgen"

# (importer prefix, imported prefixes it must never reach): each layer stands on those below it
LAYER_RULES = [
    # run-dir readers never need the trainer, and nothing below the command line needs it
    (("clipgen.models", "clipgen.encoders", "clipgen.data", "clipgen.run_dir", "clipgen.formats",
      "clipgen.pipeline", "clipgen.comparison", "clipgen.serve", "clipgen.eval"),
     ("clipgen.train", "clipgen.demo", "clipgen.commands", "clipgen.cli")),
    # a model file never reaches up into a converter of other projects' formats
    (("clipgen.models",), ("clipgen.formats", "clipgen.pipeline")),
    # run_dir.py (the run layout) imports encoders.gap: encoders/ is handed paths, never the layout
    (("clipgen.encoders",), ("clipgen.run_dir",)),
    # commands/ parses arguments and calls down: only the command line imports it
    (("clipgen",), ("clipgen.commands",)),
]
MAY_IMPORT_COMMANDS = ("clipgen.cli", "clipgen.commands", "clipgen.__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the clipgen modules it imports (a `from pkg import name` counts as pkg.name when
    that is a module, else as pkg)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def known(name: str) -> str:
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            assert not (isinstance(node, ast.ImportFrom) and node.level), f"{path}: relative import"
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names if a.name.split(".")[0] == "clipgen"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "clipgen":
                targets |= {known(f"{node.module}.{a.name}") for a in node.names}
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the depth-first path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "clipgen.data.shapes_shards" in graph["clipgen.demo.stages"]  # imported inside a function
    assert "clipgen.formats.taming" in graph and "clipgen.models.vqgan" in graph["clipgen.formats.taming"]


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layers_import_only_downwards():
    broken = []
    for importer, targets in sorted(import_graph().items()):
        for below, forbidden in LAYER_RULES:
            if not importer.startswith(below) or importer.startswith(MAY_IMPORT_COMMANDS):
                continue
            broken += [f"{importer} -> {t}" for t in sorted(targets) if t.startswith(forbidden)]
    assert not broken, "imports against the layering:\n" + "\n".join(broken)
