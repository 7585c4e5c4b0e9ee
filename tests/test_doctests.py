"""Runs the runnable examples in every module's docstrings (river style: the docs are tested)."""

from __future__ import annotations

import doctest
import importlib

import pytest
from layout import DEV, PRODUCT, modules

MODULES = modules(PRODUCT) + modules(DEV)


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
    assert {
        "migwatch.contract.records",
        "migwatch.contract.trace",
        "migwatch.contract.config",
        "migwatch_dev.lab.scenario",
    } <= with_examples
