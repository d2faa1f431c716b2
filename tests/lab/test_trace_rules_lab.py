"""The silent-hop rule and the pacing (agent.trace.session) against real kernel routers, on a path like
a real one to Pyongyang: 120 ms round trip, the silent router behind the long link (fixture scenario
tests/fixtures/lab/long-silent-path.toml). Every trace runs inside the lab's vantage namespace.

No timed assertions (speed is bench/trace_bench.py's): what must hold is the hop list on every protocol,
the silent hop reported `*` after its retry, few probes past the destination, and a slow router (its own
ICMP sent on a detour, 2.2 x the next hop's RTT) still shown, by the first probe or while its retry
is out.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab.info import LabInfo
from agent.lab.topology import LINKS, TTK
from tests.support.labprefix import claim_prefix, lab_skip_reason
from tests.support.labtrace import PROTOCOLS, hop_list, lab_config, trace_cmd

pytestmark = pytest.mark.lab

SCENARIO = Path(__file__).resolve().parents[1] / "fixtures" / "lab" / "long-silent-path.toml"
TARGET_PREFIX = "198.19.177.0/24"
DETOUR_TABLE = 151


@pytest.fixture(scope="module")
def slow_lab() -> Iterator[LabInfo]:
    """A lab of its own with the long silent path (the session's `lab` keeps the default scenario)."""
    from agent.lab import build, scenario

    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    prefix, lock = claim_prefix()
    try:
        build.down(prefix)
        info = build.up(prefix, scenario.load(SCENARIO))
        try:
            yield info
        finally:
            build.down(prefix)
    finally:
        os.close(lock)


def trace(lab: LabInfo, protocol: str) -> dict[str, Any]:
    target = lab.prefixes[TARGET_PREFIX].echo_host
    proc = subprocess.run(trace_cmd(lab, target, "--protocol", protocol), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hop_list_and_silent_hop_on_a_long_path(slow_lab: LabInfo, protocol: str) -> None:
    result = trace(slow_lab, protocol)
    expected = slow_lab.expected_hops(result["dst_addr"], TTK)
    assert hop_list(result) == expected
    silent = result["result"][expected.index(None)]["result"]
    assert silent == [{"x": "*"}, {"x": "*"}]  # the first probe and its retry, both given up
    assert result["nkprobe"]["upstream"] == TTK


def test_probes_past_the_destination_are_few(slow_lab: LabInfo) -> None:
    # Pacing: TTLs beyond the deepest one out wait until it is overdue, so a short path does not pay a
    # window of probes past its end (the lab's paths cost 2 x their hop count before).
    result = trace(slow_lab, "icmp")
    hops = len(result["result"])
    probes = sum(len(h["result"]) for h in result["result"])
    assert probes <= 1.5 * hops, result["result"]


@pytest.fixture
def slow_router(slow_lab: LabInfo) -> Iterator[str]:
    """ttk1's own ICMP (its time exceeded) goes to the vantage the long way: on along the TTK-like chain
    to the border, then back over the China-like chain and its 200 ms link, 2.2 x the RTT of the next
    hop that answers (ttk3; ttk2 is silent). Source-address rules on the routers after ttk1 keep the
    detour from coming back through ttk1, whose kernel would drop its own address arriving as a martian;
    what the routers forward otherwise is untouched. Yields ttk1's address."""
    links = {link.name: link for link in LINKS}
    source = links["isp-ttk1"].b_addr  # ttk1 answers from the interface the probe came in on
    detour = (
        ("ttk1", links["ttk1-ttk2"].b_addr, ["iif", "lo", "ipproto", "icmp"]),
        ("ttk2", links["ttk2-ttk3"].b_addr, ["from", source]),
        ("ttk3", links["ttk3-border"].b_addr, ["from", source]),
        ("border", links["cu2-border"].a_addr, ["from", source]),
    )
    for role, via, match in detour:
        ns = f"{slow_lab.prefix}{role}"
        table = str(DETOUR_TABLE)
        subprocess.run(
            ["ip", "-n", ns, "route", "add", "198.18.0.0/24", "via", via, "table", table], check=True
        )
        subprocess.run(["ip", "-n", ns, "rule", "add", *match, "priority", "40", "table", table], check=True)
    try:
        yield source
    finally:
        for role, _via, _match in detour:
            ns = f"{slow_lab.prefix}{role}"
            subprocess.run(["ip", "-n", ns, "rule", "del", "priority", "40"], check=False)
            subprocess.run(["ip", "-n", ns, "route", "flush", "table", str(DETOUR_TABLE)], check=False)


@pytest.mark.parametrize(("near_factor", "probes"), [(None, 1), (1.5, 2)])
def test_a_hop_slower_than_the_next_is_still_shown(
    slow_lab: LabInfo, slow_router: str, tmp_path: Path, near_factor: float | None, probes: int
) -> None:
    # The default rule (3 x the next answer's RTT) waits long enough for a router 2.2 x slower than the
    # next; at 1.5 x its first probe is given up and retried, and its late answer comes while the retry
    # is out, so the hop still shows it (the retry itself, as slow, is given up: "*").
    extra = {} if near_factor is None else {"near_factor": str(near_factor)}
    config = lab_config(slow_lab, tmp_path, **extra)
    target = slow_lab.prefixes[TARGET_PREFIX].echo_host
    proc = subprocess.run(trace_cmd(slow_lab, target, "--protocol", "icmp", config=config),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    slow, after = result["result"][2]["result"], result["result"][4]["result"]
    answers = [r for r in slow if "from" in r]
    assert [r["from"] for r in answers] == [slow_router], slow
    next_rtt = min(r["rtt"] for r in after if "rtt" in r)
    assert answers[0]["rtt"] > 2 * next_rtt, (slow, next_rtt)  # the lab really made it that slow
    assert len(slow) == probes, slow
    assert hop_list(result) == slow_lab.expected_hops(result["dst_addr"], TTK)
