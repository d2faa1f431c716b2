"""Which lab prefix a test session may build under, and whether lab tests can run here at all: the
session lab of tests/conftest.py and the labs of their own of tests/lab/test_nat_lab.py and
test_trace_rules_lab.py claim their prefixes the same way."""

from __future__ import annotations

import fcntl
import os

import pytest

# The session's lab prefix. Test sessions running at the same time on one machine (several developers,
# or a developer and CI) each take the first free prefix of this list; a prefix is taken while a session
# holds the flock on its lock file, so a lab left behind by a killed session is recognised as stale.
LAB_TEST_PREFIXES = (
    os.environ.get("NKPROBE_TEST_LAB_PREFIX", "nkp-t-"),
    "nkp-ta-",
    "nkp-tb-",
    "nkp-tc-",
    "nkp-td-",
)
LOCK_DIR = "/run/nkprobe-lab"


def lab_skip_reason() -> str | None:
    """Why lab tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces); run pytest as root, as CI does"
    if not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


def claim_prefix(prefixes: tuple[str, ...] = LAB_TEST_PREFIXES) -> tuple[str, int]:
    """The first of `prefixes` no other live test session holds, and the lock fd that keeps it ours
    (a flock on LOCK_DIR/<prefix>.test-lock, held until the fd is closed)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    for prefix in prefixes:
        fd = os.open(f"{LOCK_DIR}/{prefix.rstrip('-')}.test-lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return prefix, fd
    pytest.fail(f"all lab test prefixes {prefixes} are in use by other test sessions; wait for one")
