"""No module that Python 3.12 or 3.13 removed from the standard library is used anywhere: Raspberry Pi OS
trixie runs Python 3.13 (bookworm 3.11, where they still import with a DeprecationWarning, so only a
check like this one finds them before a user does).

Python files are read as syntax (every `import` and `from ... import`, at any depth, and
`importlib.import_module("...")` with a literal name); shell scripts, whose Python runs as
`python3 -c '...'` snippets or heredocs, are searched for the same statements as text.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# PEP 594 ("dead batteries", removed in 3.13; asynchat, asyncore and smtpd already in 3.12), lib2to3
# (removed in 3.13) and PEP 632's distutils and imp (removed in 3.12).
REMOVED = frozenset(
    {
        "aifc", "asynchat", "asyncore", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "mailcap",
        "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "smtpd", "sndhdr", "spwd", "sunau", "telnetlib",
        "uu", "xdrlib", "lib2to3", "distutils", "imp",
    }
)  # fmt: skip
SKIP_DIRS = {".git", ".venv", "build", "node_modules", "__pycache__", ".hypothesis", ".mypy_cache"}
_NAMES = "|".join(sorted(REMOVED))
_SHELL_IMPORT = re.compile(
    rf"(?:\bimport\s+(?:[\w.]+\s*,\s*)*|\bfrom\s+|\bpython3?\S*\s+(?:-\S+\s+)*-m\s+)({_NAMES})\b"
)


def removed_in_python(source: str, name: str = "<snippet>") -> list[str]:
    """Each removed module that `source` imports, as 'line N: module'.

    >>> removed_in_python("import os, crypt\\ndef f():\\n    from cgi import escape\\n")
    ['line 1: crypt', 'line 3: cgi']
    >>> removed_in_python("import importlib\\nimportlib.import_module('telnetlib')\\nimport cryptography\\n")
    ['line 2: telnetlib']
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source, name)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules = [node.args[0].value]
        found += [f"line {node.lineno}: {m}" for m in modules if m.split(".")[0] in REMOVED]
    return sorted(found, key=lambda s: int(s.split()[1].rstrip(":")))


def removed_in_shell(text: str) -> list[str]:
    """Each removed module a shell script's Python imports or runs with -m, as 'line N: module'.

    >>> removed_in_shell("PW=x python3 -W ignore -c 'import crypt, os; print(1)'\\n")
    ['line 1: crypt']
    >>> removed_in_shell("python3 -c 'import os, telnetlib'\\npython3 -m pipes\\n# no crypt module\\n")
    ['line 1: telnetlib', 'line 2: pipes']
    """
    return [
        f"line {number}: {match.group(1)}"
        for number, line in enumerate(text.splitlines(), 1)
        for match in _SHELL_IMPORT.finditer(line)
    ]


def _files() -> tuple[list[Path], list[Path]]:
    python, shell = [], []
    for top, dirs, names in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(names):
            path = Path(top) / name
            if path.suffix == ".py":
                python.append(path)
                continue
            try:
                with path.open("rb") as f:
                    head = f.read(64)
            except OSError:
                continue
            if path.suffix == ".sh" or re.match(rb"#!\S*(/|env )(ba)?sh\b", head):
                shell.append(path)
    return python, shell


def test_no_python_file_imports_a_module_removed_in_python_3_13() -> None:
    python, _ = _files()
    assert len(python) > 150 and any(p.parts[-2:] == ("exporter", "webconfig.py") for p in python)
    found = {
        str(path.relative_to(REPO)): hits
        for path in python
        if (hits := removed_in_python(path.read_text(encoding="utf-8"), str(path)))
    }
    assert found == {}


def test_no_shell_script_runs_python_with_a_module_removed_in_python_3_13() -> None:
    _, shell = _files()
    names = {str(p.relative_to(REPO)) for p in shell}
    assert {"deploy/central/setup.sh", "quickstart.sh", ".ci/run"} <= names, names
    found = {
        str(path.relative_to(REPO)): hits
        for path in shell
        if (hits := removed_in_shell(path.read_text(encoding="utf-8", errors="replace")))
    }
    assert found == {}
