"""`nkprobe ping` in the lab, inside the vantage namespace: answers, losses, reply TTLs, RTT accuracy.

RTT accuracy is checked against the interface: an AF_PACKET capture on the vantage host's interface
stamps each echo request as it leaves and each reply as it arrives (agent.net.capture); our RTTs, taken
from a monotonic send time and the kernel's receive stamp, must agree within 0.3 ms (median). Comparing
against the lab's *configured* delay would measure the lab's userspace delay links as much as us; that
comparison is in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import statistics
import struct
import subprocess
import sys
from typing import Any

import pytest

from agent.lab.info import LabInfo

pytestmark = pytest.mark.lab


def ping(lab: LabInfo, target: str, *args: str) -> dict[str, Any]:
    cmd = ["ip", "netns", "exec", lab.vantage_ns, sys.executable, "-m", "agent", "ping", target,
           "--config", str(lab.config_file), "--json", *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_icmp_echo_answers_with_rtt_and_reply_ttl(lab: LabInfo) -> None:
    prefix = lab.prefixes["198.19.177.0/24"]
    r = ping(lab, prefix.echo_host, "--count", "3", "--interval", "0.05")
    assert (r["sent"], r["rcvd"]) == (3, 3)
    hops = len(lab.expected_hops(prefix.echo_host, "transtelecom"))
    assert r["ttl"] == 64 - (hops - 1)  # every router on the way back decrements it once
    assert prefix.rtt_ms["transtelecom"] * 0.9 <= r["min"] <= r["max"] < prefix.rtt_ms["transtelecom"] * 3


def test_quiet_host_loses_echo_but_answers_tcp_and_exit_is_0(lab: LabInfo) -> None:
    quiet = lab.prefixes["198.19.176.0/24"].quiet_host
    lost = ping(lab, quiet, "--count", "2", "--interval", "0", "--timeout", "0.5")
    assert (lost["sent"], lost["rcvd"]) == (2, 0) and lost["result"] == [{"x": "*"}, {"x": "*"}]
    tcp = ping(lab, quiet, "--protocol", "tcp", "--port", "80", "--count", "2", "--interval", "0")
    assert (tcp["sent"], tcp["rcvd"]) == (2, 2) and tcp["proto"] == "TCP"


def test_closed_tcp_port_answers_with_rst(lab: LabInfo) -> None:
    r = ping(
        lab, lab.prefixes["198.19.176.0/24"].echo_host, "--protocol", "tcp", "--port", "81", "--count", "1"
    )
    assert r["rcvd"] == 1


def test_rtt_agrees_with_the_interface_within_0_3_ms(lab: LabInfo) -> None:
    from agent.net.capture import Capture

    target = lab.prefixes["198.19.177.0/24"].echo_host
    dev = json.loads(
        subprocess.run(
            ["ip", "-n", lab.vantage_ns, "-j", "route", "get", target], capture_output=True, text=True
        ).stdout
    )[0]["dev"]
    with Capture(dev, netns=lab.vantage_ns) as cap:
        ours = ping(lab, target, "--count", "10", "--interval", "0.05")
    requests: dict[tuple[int, int], int] = {}
    wire: list[float] = []
    for frame in cap.frames:
        ihl = (frame.data[0] & 0x0F) * 4
        icmp_type = frame.data[ihl]
        ident, seq = struct.unpack_from("!HH", frame.data, ihl + 4)
        if frame.outgoing and icmp_type == 8 and frame.dst == target:
            requests[(ident, seq)] = frame.time_ns
        elif not frame.outgoing and icmp_type == 0 and frame.src == target and (ident, seq) in requests:
            wire.append((frame.time_ns - requests[(ident, seq)]) / 1e6)
    rtts = [r["rtt"] for r in ours["result"]]
    assert len(wire) == len(rtts) == 10
    assert abs(statistics.median(rtts) - statistics.median(wire)) <= 0.3
