"""Runs the runnable examples in every module's docstrings (river style: the docs are tested)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

# The folders probes/, streams/, detectors/ and deploy/lab/ install as these subpackages (pyproject package-dir).
PACKAGES = ["migwatch", "migwatch.probes", "migwatch.streams", "migwatch.detectors", "migwatch.lab"]
MODULES = sorted(
    {
        info.name
        for package in PACKAGES
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, prefix=f"{package}.")
    }
    | set(PACKAGES)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_modules_with_examples_are_found() -> None:
    finder = doctest.DocTestFinder()
    with_examples = {
        name for name in MODULES if any(test.examples for test in finder.find(importlib.import_module(name)))
    }
    assert {"migwatch.records", "migwatch.trace", "migwatch.config", "migwatch.lab.scenario"} <= with_examples
