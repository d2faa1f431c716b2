"""Footprint: what `nkprobe run` costs a volunteer's host per packet, beside scamper at the same rate.

    sudo .venv/bin/python bench/footprint.py [--duration 120] [--warmup 30] [--configs lab,fifty] [--write]

Each config runs the real agent (`python -m agent run --netns`, HTTP on loopback) against a lab of its own
(NKPROBE_LAB_PREFIX, default "nkp-fp-"; built if absent), with a Prometheus-style scrape of /metrics every
15 s, and measures after the warm-up, over `--duration` seconds:
- CPU per packet sent: the process's user+system time (/proc/PID/stat) over the packets the vantage
  host's interface transmitted (its tx counter, so the agent and scamper are counted the same way);
- the share of one core, the packet rate, resident memory (VmRSS) and unique memory (USS: the private
  pages of /proc/PID/smaps_rollup) at the end.
Then scamper (Debian's, the reference prober of CAIDA's Ark) pings the same targets with the same
protocols at the agent's measured packet rate (its pings and traces together), in the same vantage
namespace, for the same time; its CPU comes from wait4's rusage. The ratio is the agent's CPU per
packet over scamper's. Last, the floor of any Python prober on this machine: a bare one (an interpreter,
one raw socket, one wake-up a second that reads what came and sends an ICMP echo volley; nothing else)
at the same packet rate, for the same time, measured the same way as scamper.

Configs:
- lab: two targets probed by ICMP and TCP every second, traced every 60 s (the issue's "new user" case);
- fifty: 50 targets at one ICMP ping a second, traced every 60 s;
- census: 1,024 targets (the whole /22), ping only, at max_pps 10.
The lab answers on every address of the destination /22 while this bench runs (a local route of each
/24 in its host namespace, Linux "AnyIP"), so every ping has a reply to read. Not part of CI.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.lab.info import LabInfo
from bench._agent_lab import bench_lab, machine, write_section
from tests.support.agent_harness import Agent, dump_toml

SCRAPE_EVERY_S = 15.0
DESTINATION = "198.19.176.0/22"


@dataclass(frozen=True)
class Workload:
    name: str
    what: str
    targets: tuple[str, ...]
    protocols: tuple[str, ...]
    ping_interval_s: float
    trace_interval_s: float
    max_pps: float
    traced: bool = True


def workloads() -> dict[str, Workload]:
    every = [str(a) for a in ipaddress.ip_network(DESTINATION)]
    # 50 addresses spread over the four /24s, the echo hosts first.
    fifty = ["198.19.176.10", "198.19.177.10", "198.19.178.10", "198.19.179.10"]
    fifty += [a for a in every if a not in fifty and not a.endswith((".0", ".255"))][:: len(every) // 46][:46]
    census = list(every)
    return {
        "lab": Workload("lab", "2 targets, ICMP + TCP ping every 1 s, trace every 60 s",
                        ("198.19.176.10", "198.19.177.10"), ("icmp", "tcp"), 1.0, 60.0, 20),
        "fifty": Workload("fifty", "50 targets, ICMP ping every 1 s, trace every 60 s",
                          tuple(fifty), ("icmp",), 1.0, 60.0, 100),
        "census": Workload("census", "1,024 targets (the /22), ICMP ping only, max_pps 10",
                           tuple(census), ("icmp",), 1024 / 9.5, 86400.0, 10, traced=False),
    }  # fmt: skip


def answer_everywhere(lab: LabInfo) -> None:
    """Every address of each destination /24 answers, from that /24's host namespace (AnyIP local route)."""
    for slash24 in lab.prefixes:
        ns = f"{lab.prefix}d{slash24.split('.')[2]}"
        subprocess.run(["ip", "-n", ns, "route", "replace", "local", slash24, "dev", "lo"], check=True)


def tx_packets(ns: str) -> int:
    """Packets the vantage host's interfaces have sent (loopback aside)."""
    out = subprocess.run(["ip", "-n", ns, "-s", "-o", "link"], capture_output=True, text=True, check=True)
    total = 0
    for line in out.stdout.splitlines():
        if ": lo:" in line:
            continue
        fields = line.split("TX:", 1)[1].split("\\")[1].split()
        total += int(fields[1])
    return total


def cpu_seconds(pid: int) -> float:
    """User + system time of the process's threads, from the scheduler's nanosecond run times (/proc's
    utime and stime count 10 ms ticks: a tenth of what the lab config spends in a 90 s window)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, USS) in MiB: VmRSS, and the private pages of smaps_rollup."""
    kib = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        kib[key] = int(value.split()[0])
    return kib["Rss"] / 1024, (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024


def agent_config(lab: LabInfo, directory: Path, load: Workload) -> Path:
    data: dict[str, Any] = tomllib.loads(lab.config_file.read_text())
    data["agent"].update(state_dir=str(directory / "state"), max_pps=load.max_pps)
    data["targets"] = [{"address": a} for a in load.targets]
    data["ping"] = {"interval_s": load.ping_interval_s, "protocols": list(load.protocols)}
    data["trace"] = {"interval_s": load.trace_interval_s, "enabled": load.traced}
    path = directory / f"{load.name}.toml"
    path.write_text(dump_toml(data))
    return path


@dataclass
class Figures:
    cpu_s: float
    packets: int
    seconds: float
    rss: float = 0.0
    uss: float = 0.0

    @property
    def us_per_packet(self) -> float:
        return self.cpu_s / self.packets * 1e6 if self.packets else float("nan")

    @property
    def core_pct(self) -> float:
        return self.cpu_s / self.seconds * 100

    @property
    def pps(self) -> float:
        return self.packets / self.seconds


def run_agent(lab: LabInfo, load: Workload, warmup: float, duration: float) -> Figures:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        agent = Agent(lab, agent_config(lab, directory, load), directory / "agent.log").start()
        assert agent.proc is not None
        pid = agent.proc.pid
        stop = threading.Event()

        def scrapes() -> None:  # what a Prometheus server would do
            while not stop.wait(SCRAPE_EVERY_S):
                agent.scrape()

        scraper = threading.Thread(target=scrapes, daemon=True)
        try:
            if load.ping_interval_s > warmup:
                # A census: its first volley starts at random within an interval (107.8 s); the warm-up
                # counts from its first packet, so the window sees the volleys drain, not the wait.
                tx, deadline = tx_packets(lab.vantage_ns), time.monotonic() + load.ping_interval_s * 1.2
                while tx_packets(lab.vantage_ns) - tx < 10 and time.monotonic() < deadline:
                    time.sleep(0.5)
            time.sleep(warmup)
            scraper.start()
            cpu0, tx0, t0 = cpu_seconds(pid), tx_packets(lab.vantage_ns), time.monotonic()
            time.sleep(duration)
            cpu1, tx1, t1 = cpu_seconds(pid), tx_packets(lab.vantage_ns), time.monotonic()
            rss, uss = memory_mib(pid)
        finally:
            stop.set()
            code = agent.stop()
        if code != 0:
            raise SystemExit(f"the agent exited {code}: {agent.log()}")
        return Figures(cpu1 - cpu0, tx1 - tx0, t1 - t0, rss, uss)


def scamper_commands(load: Workload, duration: float, pps: float) -> list[str]:
    """scamper ping commands for the same targets and protocols at `pps` packets a second in all."""
    methods = {"icmp": "icmp-echo", "tcp": "tcp-syn -d 80"}
    pairs = [(a, methods[p]) for a in load.targets for p in load.protocols]
    interval = len(pairs) / pps
    if interval >= duration:  # a census: one ping each, paced by scamper's packet rate (-p)
        return [f"ping -c 1 -P {m} {a}" for a, m in pairs][: int(pps * duration)]
    count = max(1, int(duration / interval))
    return [f"ping -c {count} -i {interval:.3f} -P {m} {a}" for a, m in pairs]


def run_scamper(lab: LabInfo, load: Workload, duration: float, pps: float) -> Figures:
    """scamper pinging the same targets with the same protocols for `duration` seconds at `pps`."""
    commands = scamper_commands(load, duration, pps)
    rate = str(max(1, round(pps * 1.2)))  # its own limit, above the pacing of the commands
    cmd = ["ip", "netns", "exec", lab.vantage_ns, "scamper", "-O", "warts", "-o", "/dev/null", "-p", rate]
    for command in commands:
        cmd += ["-I", command]
    return run_to_end(lab, cmd, "scamper")


def run_to_end(lab: LabInfo, cmd: list[str], what: str) -> Figures:
    """Run `cmd` (`ip netns exec` into the vantage namespace, which execs the prober: wait4's rusage is
    the prober's own) to its end; its CPU, and the packets the vantage interface sent meanwhile."""
    tx0, t0 = tx_packets(lab.vantage_ns), time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    t1, tx1 = time.monotonic(), tx_packets(lab.vantage_ns)
    if os.waitstatus_to_exitcode(status) != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{what} exited {os.waitstatus_to_exitcode(status)}: {err}")
    return Figures(usage.ru_utime + usage.ru_stime, tx1 - tx0, t1 - t0)


# The bare Python prober: `argv` = seconds, packets a second, targets. One epoll wake-up a second reads
# the replies waiting and sends the next volley of ICMP echoes, as the agent's volleys do.
BARE_PROBER = """
import itertools, select, socket, struct, sys, time
seconds, pps, targets = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
sock.setblocking(False)
def echo(seq):
    words = sum(struct.unpack("!10H", struct.pack("!BBHHH", 8, 0, 0, 0x5EB8, seq) + bytes(12)))
    words = (words >> 16) + (words & 0xFFFF)
    return struct.pack("!BBHHH", 8, 0, ~(words + (words >> 16)) & 0xFFFF, 0x5EB8, seq) + bytes(12)
poll, cycle, seq = select.epoll(), itertools.cycle(targets), 0
start = time.monotonic()
credit, due = 0.0, start
while due < start + seconds:
    poll.poll(max(0.0, due - time.monotonic()))
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            break
    credit += pps
    while credit >= 1.0:
        seq = (seq + 1) & 0xFFFF
        sock.sendto(echo(seq), (next(cycle), 0))
        credit -= 1.0
    due += 1.0
"""


def run_bare(lab: LabInfo, load: Workload, duration: float, pps: float) -> Figures:
    """The bare Python prober (BARE_PROBER) toward the same targets at `pps`, for `duration` seconds."""
    cmd = ["ip", "netns", "exec", lab.vantage_ns, sys.executable, "-I", "-c", BARE_PROBER, f"{duration:g}",
           f"{pps:g}", *load.targets]  # fmt: skip
    return run_to_end(lab, cmd, "the bare prober")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--configs", default="lab,fifty")
    parser.add_argument("--write", action="store_true", help="write the Footprint part of bench/RESULTS.md")
    args = parser.parse_args()
    loads = workloads()
    prefix = os.environ.get("NKPROBE_LAB_PREFIX", "nkp-fp-")
    rows = []
    with bench_lab(prefix) as lab:
        answer_everywhere(lab)
        for name in args.configs.split(","):
            load = loads[name]
            agent = run_agent(lab, load, args.warmup, args.duration)
            scamper = run_scamper(lab, load, args.duration, agent.pps)
            bare = run_bare(lab, load, args.duration, agent.pps)
            rows.append((load, agent, scamper, bare))
            line = (
                f"{name}: agent {agent.us_per_packet:.0f} us/packet ({agent.pps:.1f}/s, "
                f"{agent.core_pct:.2f} % of a core, RSS {agent.rss:.1f}, USS {agent.uss:.1f} MiB); scamper"
                f" {scamper.us_per_packet:.0f} us/packet ({scamper.pps:.1f}/s); bare Python prober"
                f" {bare.us_per_packet:.0f} us/packet ({bare.pps:.1f}/s)"
            )
            print(line, flush=True)
    table = "\n".join(
        f"| {load.what} | {a.pps:.1f} | **{a.us_per_packet:.0f} µs** | {a.core_pct:.2f} % "
        f"| {a.rss:.1f} / {a.uss:.1f} MiB | {s.pps:.1f} | {s.us_per_packet:.0f} µs "
        f"| {a.us_per_packet / s.us_per_packet:.2f} | {b.us_per_packet:.0f} µs "
        f"| {a.us_per_packet / b.us_per_packet:.2f} |"
        for load, a, s, b in rows
    )
    command = (
        f"sudo .venv/bin/python bench/footprint.py --duration {args.duration:g} --warmup {args.warmup:g}"
    )
    body = f"""
`{command} --configs {args.configs}`,
{machine()}. CPU per packet is user+system time over the packets the vantage interface sent, after a
{args.warmup:g} s warm-up, with a /metrics scrape every {SCRAPE_EVERY_S:g} s; scamper pings the same
targets with the same protocols at the agent's packet rate, in the same namespace; so does a bare
Python prober (ICMP only, one wake-up a second), this machine's floor for any prober in Python.

| workload | agent packets/s | agent CPU per packet | agent % of a core | agent RSS / USS \
| scamper packets/s | scamper CPU per packet | agent / scamper | bare Python prober CPU per packet \
| agent / bare |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{table}
"""
    print(body)
    if args.write:
        write_section("Footprint", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
