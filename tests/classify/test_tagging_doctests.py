"""The tagging modules keep their worked examples: pytest's --doctest-modules (pyproject.toml) runs every
doctest of agent/, and would pass just as well if these modules lost theirs, so this counts them."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "agent.formats.atlas_in",
    "agent.formats.atlas_out",
    "agent.classify.rules",
    "agent.asn.table",
    "agent.asn.loaders",
]


@pytest.mark.parametrize("name", MODULES)
def test_module_has_doctest_examples(name: str) -> None:
    tests = doctest.DocTestFinder().find(importlib.import_module(name))
    assert sum(len(t.examples) for t in tests) > 0, f"{name} lost its doctest examples"
