"""Package structure: ``valor_data.synth`` is a leaf, and product modules import without cycles.

Read from the source with ``ast`` (every ``import`` anywhere in a module, including the ones
inside functions), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "valor_data"

# the only modules outside valor_data/synth/ that may import it: demo machinery and its command
SYNTH_IMPORTERS = {"valor_data.demo", "valor_data.commands.synth", "valor_data.commands.demo"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every valor_data module ``module``'s source imports (``from a import b``: ``a`` and ``a.b``)."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "valor_data" or name.startswith("valor_data.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {name: {m for m in _imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py")
                   if m in modules and m != name} for name, path in modules.items()}


def _is_synth(name: str) -> bool:
    return name == "valor_data.synth" or name.startswith("valor_data.synth.")


def test_only_tests_bench_and_the_demo_import_synth():
    offenders = sorted(f"{name} imports {target}" for name, targets in _graph().items()
                       if not _is_synth(name) and name not in SYNTH_IMPORTERS
                       for target in targets if _is_synth(target))
    assert offenders == [], "product code must not import valor_data.synth:\n" + "\n".join(offenders)


def test_the_allowed_synth_importers_exist():
    """A renamed or deleted importer must leave the allow list too (no stale exemptions)."""
    modules = set(_graph())
    assert SYNTH_IMPORTERS <= modules, SYNTH_IMPORTERS - modules


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (a list of modules, first == last), or [] (a package importing its own
    parent ``__init__`` is not counted: Python resolves that)."""
    state: dict[str, int] = {}          # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for dep in sorted(graph[name]):
            if name.startswith(dep + "."):
                continue
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[name] = 2
        path.pop()
        return []

    for name in sorted(graph):
        if name not in state and (found := visit(name)):
            return found
    return []


def test_product_modules_import_without_cycles():
    """E.g. the verify-splits checks share ``shards/checks.py`` instead of importing ``verify``."""
    graph = _graph()
    assert _cycle(graph) == [], " -> ".join(_cycle(graph))
    assert "valor_data.shards.checks" in graph["valor_data.shards.verify_tars"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_walker_sees_relative_nested_and_aliased_imports():
    source = ("from .. import synth\n"
              "def f():\n    import valor_data.synth.render as r\n"
              "from ..synth.corpus import read_truth\n")
    found = _imports(source, "valor_data.curate.x")
    assert {"valor_data.synth", "valor_data.synth.render", "valor_data.synth.corpus"} <= found
    assert "valor_data.synth" in _imports("from . import synth\n", "valor_data", is_package=True)
