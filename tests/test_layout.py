"""tests/ mirrors agent/: each subdirectory is named for the agent/ package whose modules its tests test
(tests/agent/ for the package's root modules and the agent as a whole), except the cross-cutting ones:
support/ (the shared fakes and helpers: every module here that is not a test module or a conftest),
fixtures/ (data files), lab/ (tests against the whole lab), deploy/ (deploy/ and dashboards/) and fleet/
(the fleet's queries). No test module imports another test module or a conftest: what two of them share
lives in tests/support/, so a test file can be moved or deleted without breaking another.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
AGENT = TESTS.parent / "agent"
CROSS_CUTTING = {"support", "fixtures", "lab", "deploy", "fleet"}


def _is_test_module(name: str) -> bool:
    """A dotted module name whose last part is a test module or a conftest.

    >>> [_is_test_module(n) for n in ("tests.lab.test_trace_lab", "conftest", "tests.support.fakes")]
    [True, True, False]
    """
    last = name.rsplit(".", 1)[-1]
    return last.startswith("test_") or last == "conftest"


def imported_test_modules(source: str, package: str) -> list[str]:
    """The test modules and conftests that `source` (a module of `package`) imports, at any depth of
    its code (function-level imports too), relative imports resolved against `package`.

    >>> imported_test_modules("from .test_scheduler import config", "tests.agent")
    ['tests.agent.test_scheduler']
    >>> imported_test_modules("def f():\\n    from tests.conftest import lab_skip_reason", "tests.lab")
    ['tests.conftest']
    >>> imported_test_modules("from tests.lab import test_trace_lab\\nimport test_deploy_e2e", "tests")
    ['tests.lab.test_trace_lab', 'test_deploy_e2e']
    >>> imported_test_modules("from tests.support.fakes import config\\nimport pytest", "tests.agent")
    []
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            if _is_test_module(base):
                found.append(base)
            else:  # `from tests.lab import test_trace_lab` names the module among the imported names
                found += [f"{base}.{a.name}" for a in node.names if _is_test_module(a.name)]
    return found


def _modules() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_test_module_imports_a_test_module_or_a_conftest() -> None:
    offenders = {}
    for path in _modules():
        package = ".".join(path.relative_to(TESTS.parent).parent.parts)
        imported = imported_test_modules(path.read_text(), package)
        if imported:
            offenders[str(path.relative_to(TESTS.parent))] = imported
    assert not offenders, f"move what these share into tests/support/: {offenders}"


def test_every_helper_module_is_in_support() -> None:
    helpers = [
        str(p.relative_to(TESTS.parent))
        for p in _modules()
        if not _is_test_module(p.stem) and p.name != "__init__.py" and "support" not in p.parts
    ]
    assert helpers == [], "a module that is neither a test nor a conftest belongs in tests/support/"


def test_every_subdirectory_mirrors_an_agent_package_or_is_cross_cutting() -> None:
    packages = {p.name for p in AGENT.iterdir() if (p / "__init__.py").is_file()} | {"agent"}
    directories = {p.name for p in TESTS.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert "tracking" in directories and "support" in directories  # the walk sees the tree
    stray = sorted(directories - packages - CROSS_CUTTING)
    assert not stray, (
        f"tests/{stray[0]}/ names no agent/ package: put its tests in the directory of the package they"
        f" test, or add it to CROSS_CUTTING in {Path(__file__).name} and say why"
    )
