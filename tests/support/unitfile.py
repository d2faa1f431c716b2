"""The command line a shipped systemd unit runs, worked out the way systemd works it out, so a test can
start exactly that command without systemd (CI machines and containers have no systemd as PID 1).

Only what our units use is understood; anything else in ExecStart= (another specifier, a `$VAR` that no
EnvironmentFile= sets) is an error, so a unit edited beyond this reader fails the test instead of
running a different command. References: systemd.service(5) "Command lines", systemd.unit(5)
"Specifiers", systemd.exec(5) EnvironmentFile=, LoadCredential=, StateDirectory=.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path


def read_unit(text: str) -> dict[str, list[str]]:
    """`[Section] Key=value` lines, continuation lines joined; key "Section.Key" -> values in order.

    >>> read_unit("[Service]\\nExecStart=/bin/x \\\\\\n    -a\\nUMask=0077\\n")
    {'Service.ExecStart': ['/bin/x -a'], 'Service.UMask': ['0077']}
    """
    out: dict[str, list[str]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def read_environment_file(text: str) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile= (comments and blank lines skipped).

    >>> read_environment_file("# x\\nA=1\\nB=http://h/p\\n")
    {'A': '1', 'B': 'http://h/p'}
    """
    env: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


@dataclass(frozen=True)
class Service:
    """What a test needs to run a unit's service by hand."""

    argv: list[str]
    environment_files: list[str]  # paths as the unit names them
    credentials: dict[str, str]  # LoadCredential= name -> source path as the unit names it
    state_directories: list[str]  # relative to %S
    state_directory_mode: int
    umask: int


def service(unit_text: str, *, environment: dict[str, str], credentials_dir: str, state_dir: str) -> Service:
    """The unit's ExecStart= argv with `${VAR}` from `environment` (its EnvironmentFile= contents),
    `%d` = `credentials_dir` ($CREDENTIALS_DIRECTORY) and `%S` = `state_dir` (/var/lib for system units)
    substituted, plus the settings around it."""
    unit = read_unit(unit_text)
    (exec_start,) = unit["Service.ExecStart"]
    specifiers = {"d": credentials_dir, "S": state_dir, "%": "%"}

    def specifier(m: re.Match[str]) -> str:
        if m.group(1) not in specifiers:
            raise ValueError(f"ExecStart= uses specifier %{m.group(1)}, which this reader does not know")
        return specifiers[m.group(1)]

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in environment:
            raise ValueError(f"ExecStart= uses ${name}, which no EnvironmentFile= sets")
        return environment[name]

    argv = []
    for word in shlex.split(exec_start):
        # systemd.service(5): "${FOO}" is substituted within a word; "$FOO" alone is split on spaces
        # (our values never contain any, install.sh's check_value makes sure).
        argv.append(re.sub(r"\$\{(\w+)\}|\$(\w+)", variable, re.sub(r"%(.)", specifier, word)))
    credentials = {}
    for spec in unit.get("Service.LoadCredential", []):
        name, _, source = spec.partition(":")
        credentials[name] = source
    return Service(
        argv=argv,
        environment_files=unit.get("Service.EnvironmentFile", []),
        credentials=credentials,
        state_directories=" ".join(unit.get("Service.StateDirectory", [])).split(),
        state_directory_mode=int(unit.get("Service.StateDirectoryMode", ["0755"])[-1], 8),
        umask=int(unit.get("Service.UMask", ["0022"])[-1], 8),
    )


def in_root(root: Path, path: str) -> Path:
    """An absolute path of the installed system, inside the directory standing for its root."""
    return root / path.lstrip("/")
