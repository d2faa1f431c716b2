"""Paths, tool lookup, unit-file parsing and the MDWE wrapper shared by the deploy/ and dashboards/ tests."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CENTRAL = DEPLOY / "central"
DASHBOARDS = REPO / "dashboards"
INSTALL = DEPLOY / "raspberry-pi" / "install.sh"


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail in CI (`.ci/run` runs with CI=true), where every tool the tests
    need is an install step of quickstart.sh and a skip would only hide a missing one."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must have it, so this is a failure there, not a skip")
    pytest.skip(reason)


def need_tool(name: str) -> str:
    """The tool's path; if it is missing, skip (a developer's machine) or fail (CI), saying which Debian
    package brings it."""
    path = shutil.which(name)
    if path is None:
        package = {
            "promtool": "prometheus",
            "prometheus": "prometheus",
            "systemd-analyze": "systemd",
            "shellcheck": "shellcheck",
            "mmdebstrap": "mmdebstrap",
            "vmagent": "victoria-metrics",
            "setpriv": "util-linux",
            "amtool": "prometheus-alertmanager",
            "prometheus-alertmanager": "prometheus-alertmanager",
            "dpkg-buildpackage": "dpkg-dev",
            "dh": "debhelper",
            "dh_python3": "dh-python pybuild-plugin-pyproject",
        }.get(name, name)
        unavailable(f"{name} not installed (apt-get install {package}; CI: quickstart.sh's package list)")
    return path


# The receiver secrets deploy/central/alertmanager.yml reads; setup.sh stops without them.
RECEIVER_SECRETS = ("smtp_password", "webhook_token")


def write_receiver_secrets(secrets: Path) -> None:
    """What the operator writes before the first `setup.sh` (deploy/README.md "Alerts")."""
    (secrets / "alertmanager").mkdir(parents=True, exist_ok=True)
    for name in RECEIVER_SECRETS:
        (secrets / "alertmanager" / name).write_text(f"test-{name}\n")


def unit_directives(path: Path) -> dict[str, list[str]]:
    """A systemd unit's `Key=value` lines (continuations joined, whitespace squeezed), every value of
    each key in order."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(" ".join(value.split()))
    return out


# `python3 -c MDWE_EXEC PROGRAM ARG...` runs PROGRAM with Linux's memory-deny-write-execute on
# (PR_SET_MDWE, Linux 6.3+, inherited across fork and execve: PR_SET_MDWE(2const)), the kernel's own form
# of the rule systemd's MemoryDenyWriteExecute=yes enforces with a seccomp filter (systemd.exec(5)): no
# mapping may be writable and executable, nor become executable. It checks what it set: prctl's return
# code, then PR_GET_MDWE; it exits 126 with the reason instead of running PROGRAM unprotected. The prctl
# arguments are passed as unsigned long: prctl(2) is variadic, and the kernel refuses PR_SET_MDWE with
# EINVAL when the unused arguments are not 0 (a C int would leave the
# upper halves of those registers unspecified).
MDWE_EXEC = """
import ctypes, os, sys
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.restype = ctypes.c_int
def prctl(option, arg):
    return libc.prctl(ctypes.c_int(option), *(ctypes.c_ulong(a) for a in (arg, 0, 0, 0)))
if prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) != 0:
    print("mdwe: prctl(PR_SET_MDWE) failed:", os.strerror(ctypes.get_errno()), "(needs Linux 6.3+)",
          file=sys.stderr)
    sys.exit(126)
mask = prctl(PR_GET_MDWE, 0)
if mask < 0 or not mask & PR_MDWE_REFUSE_EXEC_GAIN:
    print("mdwe: PR_GET_MDWE reports", mask, "after PR_SET_MDWE", file=sys.stderr)
    sys.exit(126)
print(f"mdwe: on (PR_GET_MDWE = {mask})", file=sys.stderr, flush=True)
os.execv(sys.argv[1], sys.argv[1:])
"""


class FakeRoot:
    """A directory standing for the Pi's root file system. Commands install.sh runs inside it (chroot)
    and systemctl calls are written to logs instead of being executed; `deb` is passed as --deb."""

    def __init__(self, tmp: Path, deb: Path | None = None) -> None:
        self.root = tmp / "root"
        (self.root / "etc").mkdir(parents=True)
        (self.root / "etc" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
        (self.root / "etc" / "hostname").write_text("pi-test.example\n")
        self.chroot_log = tmp / "chroot.log"
        self.systemctl_log = tmp / "systemctl.log"
        for tool, log in (("chroot", self.chroot_log), ("systemctl", self.systemctl_log)):
            script = tmp / f"fake-{tool}"
            script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
            script.chmod(0o755)
        # apt-get installing a .deb unpacks it into the root as dpkg would, but for the maintainer
        # scripts; files in /etc (conffiles) that exist are kept.
        with open(tmp / "fake-chroot", "a") as chroot:
            chroot.write(
                'root=$1; shift\nif [ "$1" = apt-get ]; then for a; do case $a in *.deb)\n'
                '  t=$(mktemp -d); dpkg-deb -x "$root$a" "$t"; mkdir -p "$root/etc"\n'
                '  cp -a -n "$t/etc/." "$root/etc/"; rm -rf "$t/etc"; cp -a "$t/." "$root/"; rm -rf "$t" ;;\n'
                "esac; done; fi\n"
            )
        self.deb = deb
        self.env = {
            **os.environ,
            "ROOT": str(self.root),
            "CHROOT": str(tmp / "fake-chroot"),
            "SYSTEMCTL": str(tmp / "fake-systemctl"),
        }

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        for log in (self.chroot_log, self.systemctl_log):
            log.unlink(missing_ok=True)
        given = ["--deb", str(self.deb)] if self.deb and args[:1] != ("uninstall",) else []
        return subprocess.run(
            ["bash", str(INSTALL), *args, *given],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def mode(self, p: str) -> int:
        return stat.S_IMODE(self.path(p).stat().st_mode)

    def chroot_calls(self) -> list[str]:
        text = self.chroot_log.read_text() if self.chroot_log.exists() else ""
        return [line.removeprefix(f"{self.root} ") for line in text.splitlines()]

    def systemctl_calls(self) -> list[str]:
        return self.systemctl_log.read_text().splitlines() if self.systemctl_log.exists() else []
