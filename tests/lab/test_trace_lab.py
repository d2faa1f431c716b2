"""`nkprobe trace` against real kernel routers in the lab, always run inside the vantage namespace.

Hop lists must equal what the lab predicts for ICMP, UDP and TCP on both upstreams (the silent TTK
router is a hop without replies); the per-flow split /24 shows both chains over 16 flows and exactly one
chain per flow; RIPE's own parser reads our JSON; the packet rate at the vantage interface never exceeds
max_pps; CAP_NET_RAW alone suffices and its absence is a one-line exit 2.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.lab.info import LabInfo
from agent.lab.topology import CHINA, TTK
from tests.support.labtrace import PROTOCOLS, hop_list, lab_config, nkprobe, trace_cmd

pytestmark = pytest.mark.lab

UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture(scope="module")
def traces(lab: LabInfo) -> dict[tuple[str, str], dict[str, Any]]:
    """One trace per (upstream, protocol), all six started together to keep the test short."""
    targets = {
        CHINA: lab.prefixes["198.19.176.0/24"].echo_host,
        TTK: lab.prefixes["198.19.177.0/24"].echo_host,
    }
    procs = {
        (up, proto): subprocess.Popen(
            trace_cmd(lab, target, "--protocol", proto),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for up, target in targets.items()
        for proto in PROTOCOLS
    }
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        out[key] = json.loads(stdout)
    return out


@pytest.mark.parametrize("upstream", [CHINA, TTK])
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_hop_list_matches_the_lab(
    lab: LabInfo, traces: dict[tuple[str, str], dict[str, Any]], upstream: str, protocol: str
) -> None:
    result = traces[(upstream, protocol)]
    expected = lab.expected_hops(result["dst_addr"], upstream)
    assert hop_list(result) == expected
    assert result["proto"] == protocol.upper() and result["src_addr"] == lab.vantage_address
    if upstream == TTK:
        silent = expected.index(None) + 1
        assert result["result"][silent - 1]["result"] == [{"x": "*"}] * len(
            result["result"][silent - 1]["result"]
        )
    assert result["nkprobe"]["upstream"] == upstream


@pytest.mark.parametrize("upstream", [CHINA, TTK])
def test_ripe_atlas_sagan_reads_our_json(
    traces: dict[tuple[str, str], dict[str, Any]], upstream: str
) -> None:
    from ripe.atlas.sagan import TracerouteResult

    for protocol in PROTOCOLS:
        ours = traces[(upstream, protocol)]
        parsed = TracerouteResult(ours, on_error=TracerouteResult.ACTION_FAIL)
        assert not parsed.is_error and parsed.is_success
        assert parsed.destination_ip_responded
        assert parsed.total_hops == len(ours["result"])
        for hop, raw in zip(parsed.hops, ours["result"], strict=True):
            assert hop.index == raw["hop"]
            assert [p.origin for p in hop.packets] == [r.get("from") for r in raw["result"]]
            assert [p.rtt for p in hop.packets] == [r.get("rtt") for r in raw["result"]]


def test_sixteen_flows_over_the_split_prefix_show_both_chains_one_per_flow(lab: LabInfo) -> None:
    target = lab.prefixes["198.19.178.0/24"].echo_host
    proc = subprocess.run(
        trace_cmd(lab, target, "--protocol", "udp", "--flows", "16"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == 16 and sorted(r["paris_id"] for r in results) == list(range(16))
    from ripe.atlas.sagan import TracerouteResult

    for r in results:  # RIPE's parser reads every element of the --flows array, not just one
        parsed = TracerouteResult(r, on_error=TracerouteResult.ACTION_FAIL)
        assert not parsed.is_error and parsed.destination_ip_responded, r["paris_id"]
        assert parsed.paris_id == r["paris_id"] and parsed.total_hops == len(r["result"])
        assert [[p.origin for p in h.packets] for h in parsed.hops] == [
            [x.get("from") for x in h["result"]] for h in r["result"]
        ]
    chains = {up: lab.expected_hops(target, up) for up in (CHINA, TTK)}
    seen = set()
    for r in results:
        hops = hop_list(r)
        matching = [up for up, chain in chains.items() if hops == chain]
        assert len(matching) == 1, f"flow {r['paris_id']} mixes chains: {hops}"
        assert r["nkprobe"]["upstream"] == matching[0]
        seen.add(matching[0])
    assert seen == {CHINA, TTK}


def test_packet_rate_at_the_vantage_interface_never_exceeds_max_pps(lab: LabInfo, tmp_path: Path) -> None:
    from agent.lab.capture import Capture, max_in_window

    max_pps = 20
    config = lab_config(lab, tmp_path, max_pps=str(max_pps))
    target = lab.prefixes["198.19.178.0/24"].echo_host
    with Capture(_vantage_ifname(lab), netns=lab.vantage_ns) as cap:
        proc = subprocess.run(
            trace_cmd(lab, target, "--protocol", "icmp", "--flows", "8", config=config),
            capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sent = [f.time_ns for f in cap.frames if f.outgoing and f.src == lab.vantage_address and f.dst == target]
    # 8 flows need far more than one second's budget, so the cap is really exercised...
    assert len(sent) > 2 * max_pps
    # ... and no one-second window at the interface holds more than max_pps of them.
    assert max_in_window(sent) <= max_pps


def _vantage_ifname(lab: LabInfo) -> str:
    out = subprocess.run(
        ["ip", "-n", lab.vantage_ns, "-j", "route", "get", "198.19.176.10"], capture_output=True, text=True
    )
    dev: str = json.loads(out.stdout)[0]["dev"]
    return dev


def test_cap_net_raw_alone_is_enough(lab: LabInfo) -> None:
    target = lab.prefixes["198.19.176.0/24"].echo_host
    caps = ["--inh-caps=+net_raw", "--ambient-caps=+net_raw"]
    cmd = nkprobe(lab, "trace", target, "--config", str(lab.config_file), "--json", "--no-dns",
                  prefix=(*UNPRIVILEGED, *caps))  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert hop_list(json.loads(proc.stdout)) == lab.expected_hops(target, CHINA)
    for protocol in ("icmp", "tcp"):
        cmd = nkprobe(lab, "ping", target, "--protocol", protocol, "--count", "1", "--json",
                      "--config", str(lab.config_file), prefix=(*UNPRIVILEGED, *caps))  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rcvd"] == 1


def test_without_capabilities_exit_2_and_one_line_naming_cap_net_raw(lab: LabInfo) -> None:
    target = lab.prefixes["198.19.176.0/24"].echo_host
    for command in ("trace", "ping"):
        cmd = nkprobe(
            lab, command, target, "--config", str(lab.config_file), prefix=(*UNPRIVILEGED, "--inh-caps=-all")
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert "CAP_NET_RAW" in lines[0] and "AmbientCapabilities=CAP_NET_RAW" in lines[0]
        assert "setpriv --inh-caps +net_raw --ambient-caps +net_raw" in lines[0]


def test_target_outside_the_lab_prefixes_is_refused_before_any_socket(lab: LabInfo) -> None:
    # 198.18.1.2 is a lab router, so even if the check failed nothing would leave the lab.
    proc = subprocess.run(trace_cmd(lab, "198.18.1.2"), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "outside the configured destination prefixes (198.19.176.0/22)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_target_is_a_result_with_exit_0(lab: LabInfo, tmp_path: Path) -> None:
    # 198.19.176.90 does not exist: the border router forwards it to the destination host, which does not
    # forward and sends nothing back, so every hop past the border is silent up to --max-hops.
    config = lab_config(lab, tmp_path, timeout_s="0.3", retries="0")
    cmd = trace_cmd(lab, "198.19.176.90", "--protocol", "icmp", "--max-hops", "8", config=config)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["dst_addr"] == "198.19.176.90"
    chain = lab.expected_hops("198.19.176.10", CHINA)[:-1]  # up to the border, without the host
    assert hop_list(result) == (*chain, None, None, None)
    assert [r for hop in result["result"] for r in hop["result"] if "err" in r] == []
    assert result["nkprobe"]["upstream"] == CHINA


# The ICMP errors a router sends for a refused destination, by nftables' name, and the letter RIPE Atlas
# (and so our JSON) writes for each (CONTRACT.md "Traceroute JSON"; RFC 792 / RFC 1812 codes 0, 1, 2, 13).
# Rejected by a firewall rule rather than an `unreachable`/`prohibit` route: Linux rate-limits the
# errors of those routes per peer (ip_error(), one a second after a burst of five, not adjustable inside
# a namespace), so a second trace within seconds would see silence; a `reject` goes through icmp_send(),
# which the lab leaves unlimited (icmp_ratelimit = 0).
REFUSED = {
    "198.19.176.96": ("net-unreachable", "N", "tcp"),
    "198.19.176.97": ("host-unreachable", "H", "udp"),
    "198.19.176.98": ("admin-prohibited", "A", "icmp"),
    "198.19.176.99": ("prot-unreachable", "P", "tcp"),
}


@pytest.fixture
def border_rejects(lab: LabInfo) -> Iterator[None]:
    """An nftables table in the border router rejecting each REFUSED address with its ICMP error."""
    border = f"{lab.prefix}border"
    rules = ["table ip nkprobe_test {", "  chain forward {", "    type filter hook forward priority 0;"]
    rules += [f"    ip daddr {addr} reject with icmp type {kind}" for addr, (kind, _, _) in REFUSED.items()]
    rules += ["  }", "}"]
    subprocess.run(["ip", "netns", "exec", border, "nft", "-f", "-"], input="\n".join(rules), text=True,
                   check=True)  # fmt: skip
    try:
        yield
    finally:
        subprocess.run(
            ["ip", "netns", "exec", border, "nft", "delete", "table", "ip", "nkprobe_test"], check=False
        )


@pytest.mark.usefixtures("border_rejects")
def test_icmp_errors_from_a_router_end_the_trace_with_their_ripe_letter(lab: LabInfo) -> None:
    procs = {}
    for addr, (_, _, protocol) in REFUSED.items():
        cmd = trace_cmd(lab, addr, "--protocol", protocol)
        procs[addr] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The border router's filter sits after its TTL check (netfilter's forward hook comes after
    # ip_forward() sends time-exceeded): the probe that expires there is answered as any other, the next
    # one is refused, so the border shows twice, the second time with the error, and the trace stops.
    chain = lab.expected_hops("198.19.176.10", CHINA)[:-1]
    border = chain[-1]
    for addr, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        result = json.loads(stdout)
        kind, letter, protocol = REFUSED[addr]
        assert result["proto"] == protocol.upper()
        assert hop_list(result) == (*chain, border), f"{addr} ({kind}): {result['result']}"
        *before, last = result["result"]
        assert [r for hop in before for r in hop["result"] if "err" in r] == []
        assert last["hop"] == len(chain) + 1
        assert [(r["from"], r["err"]) for r in last["result"]] == [(border, letter)], last
