"""Shared fixtures. `lab`: one namespace lab for the whole test session (needs root; skipped otherwise).

Tests that probe must do it inside `lab.vantage_ns` (`ip netns exec`), never from this namespace: the
fixture only yields once its own lab is up, so a test can never fall back to the real network.

How tests/ is laid out (tests/test_layout.py keeps it so): it mirrors agent/. The tests of a package's
modules are in the directory of that name (tests/tracking/ for agent/tracking/, tests/exporter/ for
agent/exporter/, ...); tests/agent/ has those of the root modules (agent.py, scheduler.py, results.py,
identity.py, vantage.py) and of the agent as a whole; tests/*.py at the top are about the whole program
(command line, imports). Cross-cutting: tests/lab/ (lab-marked tests against the whole lab),
tests/deploy/ (deploy/ and dashboards/), tests/fleet/ (the fleet's queries), tests/fixtures/ (data
files), and tests/support/, the one home of the shared fakes and helpers (`from tests.support.X import`):
no test module imports another test module or a conftest.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.labprefix import claim_prefix, lab_skip_reason

if TYPE_CHECKING:
    from agent.lab.info import LabInfo


@pytest.fixture(autouse=True)
def no_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """No unit test reaches the machine's resolver: reverse lookups fail as with no DNS server (TRY_AGAIN,
    h_errno 2), unless a test puts an answering fake in agent.classify.rdns.gethostbyaddr itself."""

    def no_server(address: str) -> tuple[str, list[str], list[str]]:
        raise socket.herror(2, "no resolver in the unit tests (tests/conftest.py)")

    monkeypatch.setattr("agent.classify.rdns.gethostbyaddr", no_server)


# Where a probe engine made in this (the test) process may send from the namespace it runs in: loopback
# and the lab's test space, whose hosts only exist inside namespaces a test made (README "The lab").
SAFE_FROM_HERE = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.18.0.0/15"))


@pytest.fixture(autouse=True)
def no_probes_toward_the_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail closed: a ProbeEngine with real sockets in this namespace (no `netns`) must be confined by its
    allowlist to loopback and the lab's space. A test whose fake did not take (say, a name imported before
    the test patched it) then fails here instead of probing real addresses, such as the shipped config's."""
    from agent.net import engine
    from agent.net.sockets import SocketSet

    real_init = engine.ProbeEngine.__init__

    def guarded(self: engine.ProbeEngine, sockets: SocketSet, *args: Any, **kwargs: Any) -> None:
        allow = kwargs.get("allow")
        if isinstance(sockets, SocketSet) and kwargs.get("netns") is None:
            nets = () if allow is None else allow.networks
            if allow is None or not all(any(n.subnet_of(s) for s in SAFE_FROM_HERE) for n in nets):  # type: ignore[arg-type]
                sockets.close()
                raise AssertionError(
                    "a test made a probe engine with real sockets in its own namespace that may send to "
                    f"{'anywhere' if allow is None else [str(n) for n in nets]}: give it a lab namespace or "
                    "an allowlist inside 127.0.0.0/8 and 198.18.0.0/15, or a fake engine"
                )
        real_init(self, sockets, *args, **kwargs)

    monkeypatch.setattr(engine.ProbeEngine, "__init__", guarded)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabInfo]:
    """A lab of its own for this session, built with the default scenario and removed at the end.

    A stale lab with the same prefix (an interrupted earlier session) is taken down first.
    """
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    from agent.lab import build, scenario

    prefix, lock = claim_prefix()
    try:
        build.down(prefix)
        info = build.up(prefix, scenario.load())
        try:
            yield info
        finally:
            build.down(prefix)
    finally:
        os.close(lock)
