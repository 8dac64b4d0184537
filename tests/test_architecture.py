"""The package's layers, read from the source with ``ast``: no import cycle, and no module imports
one from a layer above its own.

Every ``import`` counts, wherever it stands: at module level, inside a function, under
``if TYPE_CHECKING:``. A new module must be placed in :data:`LAYERS` (the test says so) before it
can import anything from zoo.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "zoo"

#: The layers, lowest first. A module may import from its own layer and the layers below. An
#: entry ending in ".*" holds a package and every module under it; any other entry is exactly
#: one module (so a new module under zoo.infer must be placed by hand).
LAYERS: tuple[tuple[str, ...], ...] = (
    # argument checks and data: the ground floor
    ("zoo.checks", "zoo.datasets.*"),
    # pure tensor algorithms, no Pyro sites
    ("zoo.ops.*",),
    # generative stories and their declarations
    ("zoo.models.*",),
    # what a Fit needs of inference: isolation, evaluation, the collapsed training model and the
    # NUTS potential derived from a model's density, guides, distributed helpers, the method
    # configurations (which a Fit holds and zoo.load rebuilds), and the optimisers (plain torch)
    (
        "zoo.infer.runtime",
        "zoo.infer.evaluate",
        "zoo.infer.collapse",
        "zoo.infer.priors",
        "zoo.infer.potential",
        "zoo.infer.guides",
        "zoo.infer.distributed",
        "zoo.infer.methods",
        "zoo.infer.optimizers",
        "zoo.infer.elbo",
    ),
    # the ArviZ adapter (plain values, no Fit) and the file format (a record, no Fit)
    ("zoo.diagnostics", "zoo.io"),
    # Fit, FitError, zoo.load
    ("zoo.results",),
    # the runners: each builds a Fit
    ("zoo.infer.svi", "zoo.infer.mcmc", "zoo.infer.exact", "zoo.infer.adversarial"),
    # zoo.fit: method configuration -> runner
    ("zoo.infer",),
    # figures, tables and sample-based metrics of fits
    ("zoo.plots", "zoo.report", "zoo.metrics", "zoo.units"),
    # workflows built on zoo.fit and Fit (zoo.sklearn: the scikit-learn estimators, being written)
    ("zoo.comparison", "zoo.sbc", "zoo.selection", "zoo.tour", "zoo.amortization", "zoo.sklearn", "zoo.leaderboard"),
    # the command line
    ("zoo.cli",),
    # the public API, and `python -m zoo`
    ("zoo", "zoo.__main__"),
)

#: Modules being rewritten in parallel, and the rules they may still break until then: "function"
#: (a zoo import inside a function; here each model's ``example()`` importing the data sets).
#: Each entry must still be needed (the test says when one can go); no other module may break
#: the rules.
PENDING: dict[str, frozenset[str]] = {}


def _broken(rule: str, offenders: list["Import"]) -> tuple[list[str], list[str]]:
    """(offences not pending, pending modules that no longer break ``rule``)."""
    new = sorted({f"{item.module}, line {item.line}: {item.target}" for item in offenders if rule not in PENDING.get(item.module, ())})
    still = {item.module for item in offenders}
    gone = sorted(module for module, rules in PENDING.items() if rule in rules and module not in still)
    return new, gone


@dataclass(frozen=True)
class Import:
    """One import statement's target in a zoo module."""

    module: str  # the importing module
    target: str  # the zoo module imported (the nearest existing module of the dotted name)
    line: int
    in_function: bool
    of_package_root: bool  # `import zoo` or `from zoo import ...`


def modules() -> dict[str, Path]:
    """Every module of zoo by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _nearest(name: str, found: dict[str, Path]) -> str | None:
    while name and name not in found:
        name = name.rpartition(".")[0]
    return name or None


def imports(found: dict[str, Path]) -> list[Import]:
    """Every zoo import in every zoo module, relative ones resolved."""
    result = []
    for module, path in found.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        tree = ast.parse(path.read_text(), filename=str(path))
        for node, in_function in _walk(tree, False):
            names: list[tuple[str, bool]] = []
            if isinstance(node, ast.Import):
                names = [(alias.name, alias.name == "zoo") for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [(base, base == "zoo")] + [(f"{base}.{alias.name}", False) for alias in node.names]
            for name, of_root in names:
                if name != "zoo" and not name.startswith("zoo."):
                    continue
                target = _nearest(name, found)
                if target is not None and (target != module or of_root):
                    result.append(Import(module, target, node.lineno, in_function, of_root))
    return result


def _walk(node: ast.AST, in_function: bool):
    for child in ast.iter_child_nodes(node):
        inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, inside
        yield from _walk(child, inside)


def layer_of(module: str) -> int | None:
    """The index in :data:`LAYERS` of ``module``'s layer, or None if it is not placed."""
    for index, layer in enumerate(LAYERS):
        for entry in layer:
            if entry.endswith(".*"):
                package = entry[:-2]
                if module == package or module.startswith(package + "."):
                    return index
            elif module == entry:
                return index
    return None


FOUND = modules()
IMPORTS = imports(FOUND)


def test_every_module_is_placed_in_a_layer() -> None:
    unplaced = sorted(module for module in FOUND if layer_of(module) is None)
    assert not unplaced, f"place these modules in LAYERS (tests/test_architecture.py): {unplaced}"


def test_the_layer_table_names_each_entry_once() -> None:
    entries = [entry for layer in LAYERS for entry in layer]
    assert len(entries) == len(set(entries))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = sorted({
        f"{item.module} (layer {layer_of(item.module)}) imports {item.target} (layer {layer_of(item.target)}), line {item.line}"
        for item in IMPORTS
        # imports of the root package are refused outright, below
        if not item.of_package_root and layer_of(item.module) is not None and layer_of(item.target) is not None
        and layer_of(item.target) > layer_of(item.module)  # type: ignore[operator]
    })
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {module: set() for module in FOUND}
    for item in IMPORTS:
        if item.target != "zoo":  # every module is inside the root package; its imports of it are refused below
            graph[item.module].add(item.target)
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" when finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                return path[path.index(neighbour):] + [neighbour]
            if neighbour not in state:
                found = visit(neighbour)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_module_imports_the_package_root() -> None:
    new, gone = _broken("root", [item for item in IMPORTS if item.of_package_root and item.module != "zoo"])
    assert not new, "import the module you need (from zoo.infer import fit), not zoo:\n" + "\n".join(new)
    assert not gone, f"fixed: remove 'root' from PENDING for {gone}"


def test_no_zoo_import_inside_a_function() -> None:
    new, gone = _broken("function", [item for item in IMPORTS if item.in_function])
    assert not new, "import at module level (the layers leave no cycle to dodge):\n" + "\n".join(new)
    assert not gone, f"fixed: remove 'function' from PENDING for {gone}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from zoo.infer import evaluate", {"zoo.infer", "zoo.infer.evaluate"}),
        ("from zoo.infer.evaluate import simulate", {"zoo.infer.evaluate"}),
        ("import zoo.results as results", {"zoo.results"}),
    ],
)
def test_imports_are_resolved_to_modules(source: str, expected: set[str], tmp_path: Path) -> None:
    """The reader this test relies on: a package import counts as an import of the package
    (running its __init__), a name imported from a module as an import of that module."""
    found = {"zoo": PACKAGE / "__init__.py", "zoo.infer": PACKAGE / "infer" / "__init__.py",
             "zoo.infer.evaluate": tmp_path / "evaluate.py", "zoo.results": tmp_path / "results.py",
             "zoo.cli": tmp_path / "cli.py"}
    (tmp_path / "evaluate.py").write_text("")
    (tmp_path / "results.py").write_text("")
    (tmp_path / "cli.py").write_text(f"def command():\n    {source}\n")
    found_imports = [item for item in imports(found) if item.module == "zoo.cli"]
    assert {item.target for item in found_imports} == expected
    assert all(item.in_function for item in found_imports)
