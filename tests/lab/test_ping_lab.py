"""`nkprobe ping` in the lab, inside the vantage namespace: answers, losses, reply TTLs, RTT accuracy.

RTT accuracy is checked against the interface: an AF_PACKET capture on the vantage host's interface
stamps each echo request as it leaves and each reply as it arrives (agent.lab.capture); our RTTs, taken
from a monotonic send time and the kernel's receive stamp, must agree within 0.3 ms (median). Comparing
against the lab's *configured* delay would measure the lab's userspace delay links as much as us; that
comparison is in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import re
import statistics
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
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


def _ping_text(lab: LabInfo, target: str, *args: str) -> str:
    cmd = ["ip", "netns", "exec", lab.vantage_ns, sys.executable, "-m", "agent", "ping", target,
           "--config", str(lab.config_file), *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK = 0x01, 0x02, 0x04, 0x10


@pytest.mark.parametrize(
    ("port", "flags", "shown"), [(81, TCP_RST | TCP_ACK, "R"), (80, TCP_SYN | TCP_ACK, "SA")]
)
def test_tcp_probe_answered_with_rst_on_a_closed_port_and_syn_ack_on_an_open_one(
    lab: LabInfo, port: int, flags: int, shown: str
) -> None:
    """On the wire, the host answers our SYN with exactly RST+ACK (closed port, RFC 9293 3.10.7.1) or
    SYN+ACK (open port), acknowledging our sequence number; the ping counts it answered and says which."""
    from agent.lab.capture import Capture

    target = lab.prefixes["198.19.176.0/24"].echo_host
    dev = json.loads(
        subprocess.run(
            ["ip", "-n", lab.vantage_ns, "-j", "route", "get", target], capture_output=True, text=True
        ).stdout
    )[0]["dev"]
    with Capture(dev, netns=lab.vantage_ns) as cap:
        out = _ping_text(lab, target, "--protocol", "tcp", "--port", str(port), "--count", "1")
    assert f"from {target}: ttl=" in out and f" flags={shown} time=" in out, out
    assert "1 sent, 1 received, 0% loss" in out, out
    syns, answers = [], []
    for frame in cap.frames:
        ihl = (frame.data[0] & 0x0F) * 4
        if frame.data[9] != 6:  # TCP only
            continue
        sport, dport, seq, ack = struct.unpack_from("!HHII", frame.data, ihl)
        tcp_flags = frame.data[ihl + 13]
        if frame.outgoing and frame.dst == target and dport == port and tcp_flags == TCP_SYN:
            syns.append((sport, seq))
        elif not frame.outgoing and frame.src == target and sport == port:
            answers.append((dport, ack, tcp_flags))
    assert len(syns) == 1, syns
    (our_port, our_seq) = syns[0]
    assert answers[:1] == [(our_port, (our_seq + 1) & 0xFFFFFFFF, flags)], answers


def test_rtt_agrees_with_the_interface_within_0_3_ms(lab: LabInfo) -> None:
    from agent.lab.capture import Capture

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


# As nobody, without any capability, inside the vantage namespace: no raw socket, so `nkprobe ping`
# falls back to an ICMP ping socket (icmplib), which net.ipv4.ping_group_range must allow (per namespace).
UNPRIVILEGED = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all"]  # fmt: skip


@pytest.fixture
def ping_group_range(lab: LabInfo) -> Iterator[Callable[[str], None]]:
    """Set the vantage namespace's ping_group_range; the lab's own value comes back afterwards."""
    key = "net.ipv4.ping_group_range"

    def sysctl(*args: str) -> str:
        cmd = ["ip", "netns", "exec", lab.vantage_ns, "sysctl", "-n", *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    before = sysctl(key)

    def set_range(value: str) -> None:
        sysctl("-w", f"{key}={value}")

    yield set_range
    sysctl("-w", f"{key}={before}")


def _unprivileged_ping(lab: LabInfo, target: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = ["ip", "netns", "exec", lab.vantage_ns, *UNPRIVILEGED, sys.executable, "-m", "agent", "ping",
           target, "--config", str(lab.config_file), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/")


def test_icmp_ping_without_cap_net_raw_uses_a_ping_socket(
    lab: LabInfo, ping_group_range: Callable[[str], None]
) -> None:
    prefix = lab.prefixes["198.19.177.0/24"]
    ping_group_range("65534 65534")  # nogroup only
    proc = _unprivileged_ping(lab, prefix.echo_host, "--json", "--count", "3", "--interval", "0.05")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert (r["sent"], r["rcvd"], r["proto"], r["ttl"]) == (3, 3, "ICMP", None)  # no TTL on a ping socket
    assert r["src_addr"] and r["dst_addr"] == prefix.echo_host
    assert prefix.rtt_ms["transtelecom"] * 0.9 <= r["min"] <= r["max"] < prefix.rtt_ms["transtelecom"] * 3
    text = _unprivileged_ping(lab, prefix.echo_host, "--count", "2", "--interval", "0")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"PING {prefix.echo_host} (icmp echo), 2 probes"  # as with CAP_NET_RAW
    assert text.stderr.startswith("note: no CAP_NET_RAW: ICMP echo through a ping socket")
    assert all(
        re.fullmatch(rf"seq={i} from {prefix.echo_host}: ttl=\? time=[\d.]+ ms", lines[i]) for i in (1, 2)
    )
    assert lines[3:5] == [f"--- {prefix.echo_host} ping statistics ---", "2 sent, 2 received, 0% loss"]
    quiet = lab.prefixes["198.19.176.0/24"].quiet_host
    lost = _unprivileged_ping(lab, quiet, "--json", "--count", "1", "--timeout", "0.3")
    assert lost.returncode == 0 and json.loads(lost.stdout)["result"] == [{"x": "*"}], lost.stderr


def test_without_cap_net_raw_nor_ping_group_range_it_says_how_to_fix_it(
    lab: LabInfo, ping_group_range: Callable[[str], None]
) -> None:
    ping_group_range("1 0")  # the kernel's default: no group
    target = lab.prefixes["198.19.177.0/24"].echo_host
    proc = _unprivileged_ping(lab, target, "--count", "1")
    assert proc.returncode == 2 and proc.stdout == ""
    [message] = proc.stderr.splitlines()
    assert "ping_group_range excludes your groups" in message and "AmbientCapabilities=CAP_NET_RAW" in message
    assert message.endswith("sudo sysctl -w net.ipv4.ping_group_range='65534 65534'")  # nogroup's own
    tcp = _unprivileged_ping(lab, target, "--protocol", "tcp", "--count", "1")
    assert tcp.returncode == 2 and "raw socket" in tcp.stderr  # TCP probes have no unprivileged way
