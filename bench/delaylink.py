"""Benchmark of the lab's userspace delay link (agent/lab/wire.py). Needs root; builds its own lab.

Two claims, measured inside a lab with prefix nkp-b- (vp-home is a 0 ms delay link through the wire,
home-isp a plain veth, isp-cu1 a 5 ms delay link):

1. The wire adds at most 0.5 ms of its own to a round trip: the median ping RTT across the 0 ms delay
   link (vantage -> home) minus the median across a plain veth (home -> ISP), 200 pings each.
2. Forwarding 1,000 packets per second costs the helper less than 10% of one core: a 1,000 echo
   requests/s flood (so 2,000 frames/s through each link, replies included; paced by this script, since
   iputils ping cannot keep 1 ms intervals on a busy machine) for 3 s, CPU time of the
   helper from /proc/<pid>/stat (utime + stime) over the wall time; once through the 0 ms link (vantage
   -> home) and once through the 5 ms link alone (home -> cu1: the heap and timed wake-ups at work).

    sudo python bench/delaylink.py            # print the results
    sudo python bench/delaylink.py --write    # and replace the "Delay link" section of bench/RESULTS.md

All traffic stays inside the lab's namespaces.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import statistics
import struct
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from agent.lab import build, nsutil, scenario, topology

PREFIX = "nkp-b-"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
SECTION = "## Delay link"
OVERHEAD_LIMIT_MS = 0.5
CPU_LIMIT = 0.10


def ping(ns: str, target: str, count: int, interval: str) -> tuple[list[float], str]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", interval, "-W", "1", target],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return [float(x) for x in re.findall(r"time=([0-9.]+) ms", proc.stdout)], proc.stdout


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5) (utime, stime), counted after the ")" that ends the command name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _echo(ident: int, seq: int) -> bytes:
    """An ICMP echo request (RFC 792) with a 56-byte payload, like ping's."""
    body = struct.pack("!BBHHH", 8, 0, 0, ident, seq & 0xFFFF) + bytes(56)
    total = sum(struct.unpack(f"!{len(body) // 2}H", body))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return body[:2] + struct.pack("!H", ~total & 0xFFFF) + body[4:]


def flood(ns: str, target: str, pid: int, seconds: float = 3.0, pps: int = 1000) -> tuple[float, float, int]:
    """Echo requests paced at `pps` from inside `ns` (iputils ping cannot keep 1 ms intervals on a busy
    machine). Returns the helper's CPU share over the flood, the rate achieved and the replies seen."""
    with nsutil.inside(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.setblocking(False)
    ident, total = os.getpid() & 0xFFFF, int(seconds * pps)
    sent = answered = 0

    def drain() -> int:
        got = 0
        while True:
            try:
                packet = sock.recv(2048)
            except BlockingIOError:
                return got
            ihl = (packet[0] & 0x0F) * 4
            if packet[ihl] == 0 and struct.unpack_from("!H", packet, ihl + 4)[0] == ident:
                got += 1

    with sock:
        before_cpu, start = cpu_seconds(pid), time.monotonic()
        while sent < total:
            now = time.monotonic()
            due = start + sent / pps
            if now < due:
                answered += drain()
                time.sleep(min(due - now, 0.0005))
                continue
            sock.sendto(_echo(ident, sent), (target, 0))
            sent += 1
        end_send = time.monotonic()
        while time.monotonic() < end_send + 0.2:
            answered += drain()
            time.sleep(0.001)
        after_cpu, after = cpu_seconds(pid), time.monotonic()
    return (after_cpu - before_cpu) / (after - start), total / (end_send - start), answered


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}, Linux {platform.release()}, {os.cpu_count()} x {model}, load average {load:.2f}"
    )


def run() -> tuple[list[str], bool]:
    sc = scenario.parse(
        {"links": {"vp-home": {"delay_ms": 0.0}, "isp-cu1": {"delay_ms": 5.0}}}, "<bench/delaylink.py>"
    )
    build.down(PREFIX)
    lab = build.up(PREFIX, sc)
    try:
        if lab.delay_backend != "wire":
            return [f"delay backend is {lab.delay_backend}, not the userspace wire: nothing to measure"], True
        pid = build.helper_pids(PREFIX)["wire"]
        assert pid, "the wire helper is not running"
        vp, home = lab.vantage_ns, topology.namespace(PREFIX, "home")
        ping(vp, "198.18.0.2", 20, "0.01")  # warm up
        wired, _ = ping(vp, topology.link("vp-home").b_addr, 200, "0.01")
        plain, _ = ping(home, topology.link("home-isp").b_addr, 200, "0.01")
        overhead = statistics.median(wired) - statistics.median(plain)
        cpu0, rate0, got0 = flood(vp, topology.link("vp-home").b_addr, pid)
        cpu5, rate5, got5 = flood(home, topology.link("isp-cu1").b_addr, pid)  # crosses only the 5 ms link
        delayed, _ = ping(vp, topology.link("isp-cu1").b_addr, 50, "0.01")
    finally:
        build.down(PREFIX)
    ok = overhead <= OVERHEAD_LIMIT_MS and max(cpu0, cpu5) < CPU_LIMIT and min(rate0, rate5) > 950
    lines = [
        SECTION,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}",
        "by `sudo python bench/delaylink.py`.",
        "",
        "| measurement | result | limit |",
        "| --- | --- | --- |",
        f"| median RTT over a plain veth (home -> ISP, 200 pings) | {statistics.median(plain):.3f} ms | |",
        f"| median RTT over a 0 ms delay link (vantage -> home, 200 pings) "
        f"| {statistics.median(wired):.3f} ms | |",
        f"| **added by the delay link per round trip** | **{overhead:.3f} ms** | {OVERHEAD_LIMIT_MS} ms |",
        f"| median RTT over 0 ms + 5 ms delay links, configured 10 ms (50 pings) "
        f"| {statistics.median(delayed):.3f} ms | |",
        f"| helper CPU, {rate0:.0f} echo/s for 3 s through the 0 ms link ({got0}/3000 answered) "
        f"| {100 * cpu0:.1f}% of a core | {100 * CPU_LIMIT:.0f}% |",
        f"| helper CPU, {rate5:.0f} echo/s for 3 s through the 5 ms link (home -> cu1, {got5}/3000 answered) "
        f"| {100 * cpu5:.1f}% of a core | {100 * CPU_LIMIT:.0f}% |",
        "",
        "Each echo request has a reply, so 1,000 echo/s is 2,000 frames/s through every link it crosses. "
        "CPU is the helper's utime + stime from /proc/<pid>/stat over the wall time of the flood. "
        f"Verdict: {'PASS' if ok else 'FAIL'}.",
        "",
    ]
    return lines, ok


def write_section(lines: list[str]) -> None:
    """Replace (or append) the "Delay link" section; keep everyone else's sections as they are."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = text.find(SECTION + "\n")
    if start >= 0:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + text[nxt + 1 :] if nxt >= 0 else text[:start]
    RESULTS.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"update the section in {RESULTS}")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/delaylink.py: needs root (it builds a lab); run it with sudo", file=sys.stderr)
        return 2
    lines, ok = run()
    print("\n".join(lines))
    if args.write:
        write_section(lines)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
