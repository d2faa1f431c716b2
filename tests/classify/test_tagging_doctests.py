"""The doctest examples in the path-tagging modules run with the suite (pytest's testpaths is tests/)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["agent.ripe", "agent.classify", "agent.asn.table", "agent.asn.loaders"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0
