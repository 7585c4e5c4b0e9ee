"""The product's layers, read from its source: every import points down, and no function is long.

contract (records, files, topics, settings) <- detectors, kafka_io <- probes, streams <- migwatch (the
applications). A layer imports only from layers below it and from itself; the developers' package
(migwatch_dev: lab, local Kafka, synthetic traces, demo) is never imported by the product.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from layout import PRODUCT, ROOT, module_files

LAYERS = {
    "migwatch.contract": 0,
    "migwatch.detectors": 1,
    "migwatch.kafka_io": 1,
    "migwatch.probes": 2,
    "migwatch.streams": 2,
    "migwatch": 3,
}
MAX_FUNCTION_LINES = 60
FILES = module_files(PRODUCT)


def package_of(module: str) -> str | None:
    """The product package a module name belongs to (the longest matching name), or None."""
    matches = [package for package in LAYERS if module == package or module.startswith(package + ".")]
    return max(matches, key=len, default=None)


def imported(tree: ast.Module, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in the tree, wherever it stands; relative ones made absolute and
    ``from package import name`` read as the module ``package.name`` where that is one of ours."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*parts, base] if base else parts)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in FILES]
            found += [(node.lineno, name) for name in submodules or [base]]
    return found


def violations(module: str, source: str, path: Path) -> list[str]:
    """What in one module's source breaks the layering, each naming both files."""
    own = package_of(module)
    assert own is not None, module
    tree = ast.parse(source, filename=str(path))
    problems = []
    for line, name in imported(tree, module, path.name == "__init__.py"):
        where = f"{path.relative_to(ROOT)}:{line}"
        if name == "migwatch_dev" or name.startswith("migwatch_dev."):
            problems.append(f"{where} imports {name}: the developers' package (deploy/dev) is not part of the product")
            continue
        other = package_of(name)
        if other is None or other == own or (other == "migwatch" and name == "migwatch"):
            continue
        target = FILES.get(name) or FILES[other]
        if LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own]):
            problems.append(
                f"{where} imports {name} ({target.relative_to(ROOT)}): layer {other} (level {LAYERS[other]}) "
                f"is not below {own} (level {LAYERS[own]})"
            )
    return problems


def test_every_product_package_has_a_layer() -> None:
    assert set(PRODUCT) == set(LAYERS)


@pytest.mark.parametrize("module", sorted(FILES))
def test_imports_point_down(module: str) -> None:
    path = FILES[module]
    assert violations(module, path.read_text(), path) == []


def test_an_upward_or_sideways_import_is_found() -> None:
    """The check itself: a contract module importing a detector, a probe importing the stream worker."""
    contract, probe = FILES["migwatch.contract.records"], FILES["migwatch.probes.scheduler"]
    upward = violations("migwatch.contract.records", "from migwatch.detectors import fusion\n", contract)
    assert upward == [
        "contract/records.py:1 imports migwatch.detectors.fusion (detectors/fusion.py): layer migwatch.detectors "
        "(level 1) is not below migwatch.contract (level 0)"
    ]
    sideways = violations("migwatch.probes.scheduler", "def f():\n    from ..streams import app\n", probe)
    assert len(sideways) == 1 and "probes/scheduler.py:2 imports migwatch.streams" in sideways[0]
    assert violations("migwatch.cli", "import migwatch_dev.lab\n", FILES["migwatch.cli"])[0].startswith(
        "migwatch/cli.py:1 imports migwatch_dev.lab: the developers' package"
    )
    assert violations("migwatch.cli", "from migwatch.probes import worker\n", FILES["migwatch.cli"]) == []


def long_functions(source: str, path: Path) -> list[str]:
    tree = ast.parse(source, filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_product_function_is_over_60_lines() -> None:
    found = [problem for path in FILES.values() for problem in long_functions(path.read_text(), path)]
    assert found == []
    long_one = "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES
    assert long_functions(long_one, FILES["migwatch.cli"]) == ["migwatch/cli.py:1 f: 61 lines"]
