"""The lab as built on this kernel: hop lists seen by Debian's traceroute, RTTs across the delay links,
per-flow splitting, flips, the hosts' services, `status`, and a `down` that leaves nothing behind.

Every packet here is sent inside the lab's vantage namespace (`ip netns exec`); the `lab` fixture skips the
module when not root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.commands import lab as lab_cmd
from agent.lab import build, kernel, nsutil, scenario
from agent.lab.info import LabInfo
from agent.lab.topology import CHINA, TTK

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def nkprobe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def traceroutes(lab: LabInfo, targets: list[str]) -> dict[str, list[str | None]]:
    """Debian traceroute -n -I to several targets at once; hop addresses, None for '*'."""
    procs = {
        t: subprocess.Popen(
            ["ip", "netns", "exec", lab.vantage_ns, "traceroute", "-n", "-I", "-q", "1", "-w", "1", t],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for t in targets
    }
    out = {}
    for target, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        hops: list[str | None] = []
        for line in stdout.splitlines()[1:]:
            fields = line.split()
            hops.append(None if fields[1] == "*" else fields[1])
        out[target] = hops
    return out


def ping_rtts(lab: LabInfo, target: str, count: int = 20) -> list[float]:
    proc = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.vantage_ns,
            "ping",
            "-n",
            "-c",
            str(count),
            "-i",
            "0.01",
            "-W",
            "1",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return [float(m) for m in re.findall(r"time=([0-9.]+) ms", proc.stdout)]


def assert_rtt(lab: LabInfo, target: str, expect_ms: float, rounds: int = 5, within_s: float = 20.0) -> None:
    """The lowest median of rounds of 20 echoes is within 1 ms of `expect_ms`: at least `rounds` rounds,
    and more for up to `within_s` seconds while none is.

    This VM's host now and then deschedules it for milliseconds (sleep(5 ms) overshoots by up to 3.6 ms
    here when idle; in a full suite run every round of a few seconds once came out 2.5 ms slow), which
    only ever adds delay: a round it spoiled is measured again. A link whose delay is really off stays
    off in every round, so this cannot hide a wrong delay.
    """
    medians: list[float] = []
    deadline = time.monotonic() + within_s
    while len(medians) < rounds or (min(medians) > expect_ms + 1.0 and time.monotonic() < deadline):
        rtts = ping_rtts(lab, target)
        assert len(rtts) == 20, rtts
        medians.append(statistics.median(rtts))
    assert min(medians) == pytest.approx(expect_ms, abs=1.0), medians


def http_get(lab: LabInfo, address: str) -> bytes:
    with nsutil.inside(lab.vantage_ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # lives in the vantage namespace
    with sock:
        sock.settimeout(5)
        sock.connect((address, 80))
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return sock.recv(1024)


def flip(lab: LabInfo, upstream: str) -> None:
    assert build.flip(lab.prefix, upstream).flip == upstream


def lab_command(capsys: pytest.CaptureFixture[str], prefix: str, *argv: str) -> tuple[int, str]:
    """`nkprobe lab --prefix PREFIX ARGV...` in this process (a fresh interpreter costs a second)."""
    parser = argparse.ArgumentParser()
    lab_cmd.add_arguments(parser)
    capsys.readouterr()
    code = lab_cmd.run(parser.parse_args(["--prefix", prefix, *argv]))
    return code, capsys.readouterr().out


def test_traceroute_shows_the_scenario_hops_for_both_flips(lab: LabInfo) -> None:
    p = lab.prefixes
    fixed = [p["198.19.176.0/24"].echo_host, p["198.19.177.0/24"].echo_host]
    split, flipped = p["198.19.178.0/24"].echo_host, p["198.19.179.0/24"].echo_host
    try:
        for upstream in (CHINA, TTK):
            flip(lab, upstream)
            seen = traceroutes(lab, [*fixed, split, flipped] if upstream == CHINA else [flipped])
            assert seen[flipped] == list(lab.expected_hops(flipped, upstream))
            if upstream == CHINA:
                assert seen[fixed[0]] == list(lab.expected_hops(fixed[0], CHINA))
                # The TransTeleCom-like chain's silent router shows as '*', exactly once.
                assert seen[fixed[1]] == list(lab.expected_hops(fixed[1], TTK))
                assert seen[fixed[1]].count(None) == 1
                # One ICMP flow over the split /24 sticks to one chain or the other.
                assert seen[split] in ([*lab.expected_hops(split, up)] for up in (CHINA, TTK))
    finally:
        flip(lab, CHINA)


def _route_get(ns: str, *args: str) -> str:
    proc = subprocess.run(["ip", "-n", ns, "-j", "route", "get", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout)[0]["gateway"])


def test_split_prefix_is_hashed_per_flow_and_each_flow_returns_the_way_it_came(lab: LabInfo) -> None:
    host = lab.prefixes["198.19.178.0/24"].echo_host
    isp, border = f"{lab.prefix}isp", f"{lab.prefix}border"
    fwd_gw = {lab.links["isp-cu1"].b_addr: CHINA, lab.links["isp-ttk1"].b_addr: TTK}
    back_gw = {lab.links["cu2-border"].a_addr: CHINA, lab.links["ttk3-border"].a_addr: TTK}
    chains = []
    for port in range(40000, 40032):
        there = _route_get(isp, host, "from", lab.vantage_address, "iif", "home", "ipproto", "udp",
                           "sport", str(port), "dport", "33434")  # fmt: skip
        back = _route_get(border, lab.vantage_address, "from", host, "iif", "d178", "ipproto", "udp",
                          "sport", "33434", "dport", str(port))  # fmt: skip
        assert fwd_gw[there] == back_gw[back], port
        chains.append(fwd_gw[there])
    assert set(chains) == {CHINA, TTK}


@pytest.mark.parametrize(("slash24", "upstream"), [("198.19.176.0/24", CHINA), ("198.19.177.0/24", TTK)])
def test_ping_rtt_matches_the_scenario(lab: LabInfo, slash24: str, upstream: str) -> None:
    info = lab.prefixes[slash24]
    assert_rtt(lab, info.echo_host, info.rtt_ms[upstream])


def test_flip_moves_the_rtt_too(lab: LabInfo) -> None:
    info = lab.prefixes["198.19.179.0/24"]
    try:
        proc = nkprobe("lab", "--prefix", lab.prefix, "flip", TTK)
        assert proc.returncode == 0 and "now via transtelecom" in proc.stdout, proc.stderr
        assert_rtt(lab, info.echo_host, info.rtt_ms[TTK])
    finally:
        flip(lab, CHINA)
    assert_rtt(lab, info.echo_host, info.rtt_ms[CHINA])


def test_quiet_host_ignores_echo_but_serves_tcp(lab: LabInfo) -> None:
    info = lab.prefixes["198.19.177.0/24"]
    assert ping_rtts(lab, info.quiet_host, count=3) == []
    # TCP through four delay links: proves frames cross the userspace wire with valid checksums.
    assert http_get(lab, info.quiet_host).startswith(b"HTTP/1.0 200 OK")
    assert b"nkprobe lab" in http_get(lab, lab.prefixes["198.19.176.0/24"].echo_host)


def test_status_lists_files_routes_and_counters(lab: LabInfo, capsys: pytest.CaptureFixture[str]) -> None:
    ping_rtts(lab, lab.prefixes["198.19.176.0/24"].echo_host, count=3)
    deadline = time.monotonic() + 3
    while True:
        code, out = lab_command(capsys, lab.prefix, "status", "--json")
        assert code == 0
        live = json.loads(out)["live"]
        if lab.delay_backend != "wire" or live["wire"]["links"]["isp-cu1"]["a>b"]["forwarded"] >= 3:
            break
        assert time.monotonic() < deadline, live["wire"]
        time.sleep(0.2)
    assert sorted(live["namespaces_present"]) == sorted(lab.namespaces)
    assert lab.prefix in build.all_prefixes()  # what `lab down --all` would remove
    assert live["routes"]["198.19.176.0/24"] == {"forward": [CHINA], "return": [CHINA]}
    assert live["routes"]["198.19.177.0/24"] == {"forward": [TTK], "return": [TTK]}
    assert live["routes"]["198.19.178.0/24"] == {"forward": [CHINA, TTK], "return": [CHINA, TTK]}
    assert live["routes"]["198.19.179.0/24"] == {"forward": [CHINA], "return": [CHINA]}
    code, text = lab_command(capsys, lab.prefix, "status")
    assert code == 0
    for needle in (str(lab.config_file), str(lab.asn_file), lab.vantage_ns, "198.19.177.0/24", "isp-cu1"):
        assert needle in text


def _root_links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return sorted(line.split(":")[1].strip() for line in out.splitlines())


def test_up_twice_is_refused_and_down_leaves_nothing(
    lab: LabInfo, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"{lab.prefix}2-"  # derived from the session's prefix: concurrent sessions never collide
    build.down(prefix)
    links_before = _root_links()
    assert not [ns for ns in nsutil.list_namespaces() if ns.startswith(prefix)]
    try:
        second = build.up(prefix, scenario.load())
        assert sorted(ns for ns in nsutil.list_namespaces() if ns.startswith(prefix)) == sorted(
            second.namespaces
        )
        assert len(second.namespaces) == 14
        again = nkprobe("lab", "--prefix", prefix, "up")
        assert again.returncode == 2 and "already up" in again.stderr and again.stderr.count("\n") == 1
        pids = build.helper_pids(prefix)
        assert all(pids.values())
    finally:
        removed = build.down(prefix)
    assert len(removed) == 14
    assert not [ns for ns in nsutil.list_namespaces() if ns.startswith(prefix)]
    assert _root_links() == links_before
    assert not any(build.alive(pid) for pid in pids.values() if pid)
    assert not (Path("/run/nkprobe-lab") / prefix.rstrip("-")).exists()
    # Nothing else went: the session's own lab is intact, and a second down is a no-op.
    assert set(lab.namespaces) <= set(nsutil.list_namespaces())
    code, out = lab_command(capsys, prefix, "down")
    assert code == 0 and "nothing to remove" in out


def test_demo_flips_and_tears_down_on_sigterm(lab: LabInfo) -> None:
    prefix = f"{lab.prefix}3-"
    build.down(prefix)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "demo", "--no-agent", "--flip-every", "0.3"],
        cwd=REPO,
        env={**os.environ, "NKPROBE_LAB_PREFIX": prefix},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "now via transtelecom" in line:
                break
        assert f"ip netns exec {prefix}vp traceroute -n -I 198.19.179.10\n" in "".join(lines).replace(
            "  ", ""
        )
        now = build.routes_in_force(prefix)["198.19.179.0/24"]
        assert now["forward"] == now["return"] and now["forward"] in ((TTK,), (CHINA,))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        build.down(prefix)
    assert proc.returncode == 0, err
    assert f"lab '{prefix}' removed" in out
    assert not [ns for ns in nsutil.list_namespaces() if ns.startswith(prefix)]


def test_jitter_and_loss_reach_the_wire(lab: LabInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    """The userspace wire's jitter and loss, on every kernel: this small lab asks for the wire backend
    even where a netem qdisc exists (README "Tests that do not run in CI": the netem backend itself)."""
    monkeypatch.setenv(kernel.BACKEND_ENV, "wire")
    prefix = f"{lab.prefix}j-"
    sc = scenario.loads("[links.vp-home]\ndelay_ms = 2\njitter_ms = 1\nloss_pct = 30\n", "<test>")
    build.down(prefix)
    try:
        small = build.up(prefix, sc)
        assert small.delay_backend == "wire"
        proc = subprocess.run(
            ["ip", "netns", "exec", small.vantage_ns, "ping", "-n", "-c", "200", "-i", "0.002", "-W", "1",
             small.links["vp-home"].b_addr],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", proc.stdout)]
        counters = build.wire_counters(prefix)
        assert counters is not None
        dropped = counters["links"]["vp-home"]
    finally:
        build.down(prefix)
    # Each direction loses 30%: about 49% of the echoes come back (binomial, 200 tries: 35%..63% is over
    # 5 sigma). RTTs are 2 x (2 +/- 1) ms, give or take the wire's wake-up correction; on a loaded
    # 2-core CI machine some echoes also wait for the scheduler (p95 8 ms seen with other work running),
    # so the upper bounds only catch a runaway delay; the lower bound and the spread show the jitter.
    assert 70 <= len(rtts) <= 126, len(rtts)
    p95 = sorted(rtts)[int(len(rtts) * 0.95)]
    assert min(rtts) >= 1.5 and p95 <= 10.0 and max(rtts) <= 25.0, rtts
    assert max(rtts) - min(rtts) > 0.5  # jitter is there
    assert dropped["a>b"]["dropped"] > 20 and dropped["b>a"]["dropped"] > 10
