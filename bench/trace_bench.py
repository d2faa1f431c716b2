"""Probe engine benchmark in the namespace lab: `nkprobe trace` against traceroute, mtr and scamper.

Run as root (it builds, or reuses, a lab; every probe runs inside the lab's vantage namespace):

    .venv/bin/python bench/trace_bench.py [--prefix nkp-b-] [--rounds 3] [--traces 1000] [--write]
        [--compare-python OTHER-VENV/bin/python]

Run it with a venv of Debian's /usr/bin/python3 (Raspberry Pi OS's interpreter, and the one
deploy/raspberry-pi/install.sh uses); `--compare-python` repeats the sustained CPU runs under another
interpreter, for instance a source build without profile-guided optimisation, which is slower.

What it measures, per path and per protocol (ICMP, UDP, TCP). The paths (PATHS): the default lab's
China-Unicom-like path (40 ms, no silent hop) and TransTeleCom-like path (25 ms, one silent hop), and the
TransTeleCom-like path of two slower labs (bench/scenarios/) where the silent hop sits behind a long link,
as on a real path to Pyongyang: 120 ms and 300 ms round trips, the silent hop within 6 ms of them.
- whole-run wall time of one trace, process start to exit, for `nkprobe trace`, Debian `traceroute`
  (-I / default UDP / -T), `mtr --report -c 1` and `scamper -c "trace -P ...-paris"`, run alternately;
- probes each tool sent (outgoing IPv4 frames at the vantage interface, AF_PACKET capture; the kernel's
  RSTs to SYN-ACKs are not counted, for every tool alike) and whether its hop list is the lab's;
- `nkprobe trace` in-process time (first probe to result, Path.duration_s);
- median RTT error: destination RTT minus the lab's configured round trip (this includes the lab's own
  userspace delay links), and our RTT minus the RTT the interface capture sees (our own error alone);
- CPU time per probe over a sustained run of many traces in one process, and the peak RSS of
  `nkprobe trace` processes.
Each round runs every tool once in turn (A B C D, A B C D, ...), and the ratio of `nkprobe trace` to each
other tool is taken round by round (paired), then its median is reported.
Targets: whole-run `nkprobe trace` <= 1.0 x traceroute of the same protocol; probes <= 1.5 x the hop
count; <= 100 us CPU per probe; <= 60 MB peak RSS. `--write` puts the results into bench/RESULTS.md
("Probe engine" section, other sections kept).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.lab import build, info, scenario
from agent.lab.capture import Capture
from agent.lab.info import LabInfo
from agent.lab.topology import CHINA, TTK
from agent.model import Protocol
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.engine import ProbeEngine, open_engine
from agent.probers import ping as ping_prober
from agent.probers import traceroute
from agent.probers.base import ProbeSpec

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "bench" / "scenarios"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Probe engine"
PROTOCOLS = ("icmp", "udp", "tcp")
UPSTREAM_PREFIX = {CHINA: "198.19.176.0/24", TTK: "198.19.177.0/24"}


@dataclass(frozen=True)
class BenchPath:
    label: str  # as the report names it
    lab: str  # lab prefix suffix: "" the default lab, else the scenario's name in bench/scenarios
    upstream: str


PATHS = (
    BenchPath("china_unicom 40 ms, no silent hop", "", CHINA),
    BenchPath("transtelecom 25 ms, silent hop", "", TTK),
    BenchPath("transtelecom 120 ms, silent hop", "slow120", TTK),
    BenchPath("transtelecom 300 ms, silent hop", "slow300", TTK),
)
IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
Hops = tuple[str | None, ...]


def tool_commands(protocol: str, target: str, config: str) -> dict[str, list[str]]:
    py = sys.executable
    nk = [
        py,
        "-m",
        "agent",
        "trace",
        target,
        "--config",
        config,
        "--json",
        "--no-dns",
        "--protocol",
        protocol,
    ]
    if protocol == "icmp":
        return {
            "nkprobe trace": nk,
            "traceroute -I": ["traceroute", "-n", "-I", target],
            "mtr --report -c 1": ["mtr", "-n", "--report", "-c", "1", target],
            "scamper icmp-paris": ["scamper", "-c", "trace -P icmp-paris", "-i", target],
        }
    if protocol == "udp":
        return {
            "nkprobe trace": nk,
            "traceroute (UDP)": ["traceroute", "-n", target],
            "mtr --report -c 1": ["mtr", "-n", "-u", "--report", "-c", "1", target],
            "scamper udp-paris": ["scamper", "-c", "trace -P udp-paris", "-i", target],
        }
    return {
        "nkprobe trace": [*nk, "--port", "80"],
        "traceroute -T": ["traceroute", "-n", "-T", "-p", "80", target],
        "mtr --report -c 1": ["mtr", "-n", "-T", "-P", "80", "--report", "-c", "1", target],
        "scamper tcp": ["scamper", "-c", "trace -P tcp -d 80", "-i", target],
    }


# -- parsing each tool's hop list --------------------------------------------------------------------


def hops_nkprobe(out: str) -> Hops:
    obj = json.loads(out)
    hops = []
    for hop in obj["result"]:
        addrs = [r["from"] for r in hop["result"] if "from" in r]
        hops.append(addrs[0] if addrs else None)
    return tuple(hops)


def hops_traceroute_like(out: str) -> Hops:
    """traceroute(8) and scamper's default text: " N  ADDR  RTT ms ..." or " N  * * *"."""
    hops: dict[int, str | None] = {}
    for line in out.splitlines():
        parts = line.split()
        if not parts or not parts[0].isdigit():
            continue
        addr = next((p for p in parts[1:] if IP_RE.match(p)), None)
        hops[int(parts[0])] = addr
    return tuple(hops.get(i) for i in range(1, max(hops, default=0) + 1))


def hops_mtr(out: str) -> Hops:
    hops: dict[int, str | None] = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\.\|--\s+(\S+)", line)
        if m:
            hops[int(m.group(1))] = m.group(2) if IP_RE.match(m.group(2)) else None
    return tuple(hops.get(i) for i in range(1, max(hops, default=0) + 1))


def parser_for(tool: str) -> Callable[[str], Hops]:
    if tool.startswith("nkprobe"):
        return hops_nkprobe
    if tool.startswith("mtr"):
        return hops_mtr
    return hops_traceroute_like


# -- running ---------------------------------------------------------------------------------------------


@dataclass
class Run:
    wall_s: float
    packets: int
    correct: bool
    maxrss_kb: int


@dataclass
class Results:
    runs: dict[tuple[str, str, str], list[Run]] = field(default_factory=lambda: defaultdict(list))
    in_process: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    in_process_ok: dict[tuple[str, str], list[bool]] = field(default_factory=lambda: defaultdict(list))
    rtt_error_cfg_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    hops: dict[str, int] = field(default_factory=dict)  # path label -> the lab's hop count
    rtt_error_wire_ms: list[float] = field(default_factory=list)
    rtt_compare: str = ""
    cpu_us_per_probe: float = 0.0
    sustained: str = ""
    other_pythons: list[str] = field(default_factory=list)  # "--compare-python" lines


def vantage_dev(lab: LabInfo) -> str:
    out = subprocess.run(["ip", "-n", lab.vantage_ns, "-j", "route", "get", "198.19.176.10"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    dev: str = json.loads(out)[0]["dev"]
    return dev


def run_tool(lab: LabInfo, dev: str, cmd: list[str], parse: Callable[[str], Hops], expected: Hops) -> Run:
    """One whole run of `cmd` inside the vantage namespace, with the frames it sent counted."""
    with Capture(dev, netns=lab.vantage_ns) as cap:
        started = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", lab.vantage_ns, *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        out, _err = proc.communicate()
        wall = time.monotonic() - started
        # Popen reaped it; its rusage is folded into RUSAGE_CHILDREN, so take maxrss from a wait4 instead:
        # run it again below only for nkprobe (cheap). Here: the frames it sent.
    packets = sum(
        1 for f in cap.frames if f.outgoing and f.src == lab.vantage_address and not _kernel_rst(f.data)
    )
    try:
        correct = proc.returncode == 0 and parse(out) == expected
    except (ValueError, KeyError):
        correct = False
    return Run(wall, packets, correct, 0)


def _kernel_rst(packet: bytes) -> bool:
    """A TCP RST: the vantage kernel's answer to a SYN-ACK for a socket it does not know (every raw-socket
    TCP tool triggers them alike), not a probe."""
    ihl = (packet[0] & 0x0F) * 4
    return packet[9] == 6 and len(packet) > ihl + 13 and bool(packet[ihl + 13] & 0x04)


def peak_rss_kb(lab: LabInfo, cmd: list[str]) -> int:
    pid = os.fork()
    if pid == 0:  # child: exec straight into the namespace wrapper, output discarded
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execvp("ip", ["ip", "netns", "exec", lab.vantage_ns, *cmd])
    _pid, _status, usage = os.wait4(pid, 0)
    return int(usage.ru_maxrss)


def _lab_allow(lab: LabInfo) -> Allowlist:
    """The engine may send only into the lab's destination /24s (the hard network rule)."""
    return Allowlist(tuple(lab.prefixes))


async def in_process(lab: LabInfo, res: Results, rounds: int, paths: list[BenchPath]) -> None:
    """In-process trace times and RTT errors, alternating paths and protocols, with the settings of the
    lab's config (the ones `nkprobe trace --config` uses)."""
    from agent.config import load_config
    from agent.probers.base import trace_spec

    config = load_config(str(lab.config_file))
    engine = open_engine(Budget(1000), netns=lab.vantage_ns, allow=_lab_allow(lab))
    async with engine:
        for _ in range(rounds):
            for bp in paths:
                p = lab.prefixes[UPSTREAM_PREFIX[bp.upstream]]
                expected = lab.expected_hops(p.echo_host, bp.upstream)
                for protocol in PROTOCOLS:
                    record = config.target(p.echo_host, trace_protocol=protocol)
                    spec = trace_spec(config, record, flows=1, port=80 if protocol == "tcp" else None)
                    (path,) = await traceroute.probe(engine, spec)
                    hops = tuple(h.addresses[0] if h.addresses else None for h in path.hops)
                    res.in_process[(bp.label, protocol)].append(path.duration_s)
                    res.in_process_ok[(bp.label, protocol)].append(hops == expected and path.reached)
                    if path.reached:
                        rtt_ms = path.hops[-1].replies[0].rtt_s * 1000
                        res.rtt_error_cfg_ms[bp.label].append(rtt_ms - p.rtt_ms[bp.upstream])


async def rtt_vs_wire(lab: LabInfo, dev: str, res: Results, count: int = 30) -> None:
    """Our ICMP echo RTTs against the RTTs the interface capture sees for the same packets."""
    import struct

    target = lab.prefixes[UPSTREAM_PREFIX[TTK]].echo_host
    engine = open_engine(Budget(1000), netns=lab.vantage_ns, allow=_lab_allow(lab))
    ours: list[float] = []
    with Capture(dev, netns=lab.vantage_ns) as cap:
        async with engine:
            for _ in range(count):
                r = await ping_prober.probe(engine, ProbeSpec(target, Protocol.ICMP, timeout_s=1.0))
                if r.rtt_s is not None:
                    ours.append(r.rtt_s * 1000)
                await asyncio.sleep(0.02)
    sent: dict[tuple[int, int], int] = {}
    wire: list[float] = []
    for f in cap.frames:
        ihl = (f.data[0] & 0x0F) * 4
        key = struct.unpack_from("!HH", f.data, ihl + 4)
        if f.outgoing and f.data[ihl] == 8:
            sent[key] = f.time_ns
        elif not f.outgoing and f.data[ihl] == 0 and key in sent:
            wire.append((f.time_ns - sent[key]) / 1e6)
    if len(wire) == len(ours):
        res.rtt_error_wire_ms = [o - w for o, w in zip(ours, wire, strict=True)]
    # The same path measured by iputils ping (kernel-stamped too), to tell the lab's own overhead on top
    # of the configured delay from ours.
    out = subprocess.run(["ip", "netns", "exec", lab.vantage_ns, "ping", "-n", "-c", str(count), "-i", "0.05",
                          target], capture_output=True, text=True).stdout  # fmt: skip
    iputils = [float(m) for m in re.findall(r"time=([\d.]+) ms", out)]
    configured = lab.prefixes[UPSTREAM_PREFIX[TTK]].rtt_ms[TTK]
    res.rtt_compare = (
        f"echo RTT to the TTK-like host ({configured:g} ms configured): nkprobe median {med(ours):.3f} ms, "
        f"iputils ping median {med(iputils):.3f} ms ({len(ours)}, {len(iputils)} echoes, run in turn)"
    )


async def sustained(lab: LabInfo, res: Results, traces: int, concurrency: int = 8) -> None:
    """CPU per probe over `traces` whole traces in one process (ICMP to the China-like /24)."""
    target = lab.prefixes[UPSTREAM_PREFIX[CHINA]].echo_host
    engine: ProbeEngine = open_engine(Budget(5000), netns=lab.vantage_ns, allow=_lab_allow(lab))
    done = 0
    async with engine:
        t0, wall0 = os.times(), time.monotonic()

        async def worker(flow: int) -> None:
            nonlocal done
            while done < traces:
                done += 1
                spec = ProbeSpec(target, Protocol.ICMP, first_flow=flow)
                await traceroute.probe(engine, spec)

        await asyncio.gather(*(worker(f) for f in range(concurrency)))
        t1, wall = os.times(), time.monotonic() - wall0
    probes = sum(engine.sent.values())
    user, system = t1.user - t0.user, t1.system - t0.system
    res.cpu_us_per_probe = (user + system) / probes * 1e6
    res.sustained = (
        f"{done} traces, {probes} probes, {engine.received} packets received in {wall:.1f} s wall, "
        f"{user + system:.2f} s CPU = {user / probes * 1e6:.0f} us user + {system / probes * 1e6:.0f} us "
        f"system a probe, {concurrency} traces at a time; system time includes the kernel forwarding "
        "each probe through the lab's veth pairs inside our sendto"
    )


# -- report -----------------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratios(res: Results, label: str, protocol: str, tool: str) -> list[float]:
    """nkprobe's whole run over `tool`'s, round by round (the two ran back to back in each round)."""
    ours = res.runs[(label, protocol, "nkprobe trace")]
    theirs = res.runs[(label, protocol, tool)]
    return [a.wall_s / b.wall_s for a, b in zip(ours, theirs, strict=False) if b.wall_s > 0]


def report(res: Results, rounds: int, rss_kb: int, backend: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))  # fmt: skip
    except StopIteration:
        model = cpu
    lines = [
        SECTION,
        "",
        f"`bench/trace_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {model}, "
        f"{os.cpu_count()} CPUs (shared with other work), Linux {platform.release()}, Python "
        f"{platform.python_version()} ({sys.executable}); lab delay backend `{backend}`; {rounds} rounds, "
        "each running every tool once in turn, all inside the vantage namespace. Paths: "
        + "; ".join(
            f"{bp.label} ({f'bench/scenarios/{bp.lab}.toml' if bp.lab else 'default lab'})" for bp in PATHS
        )
        + ".",
        "",
        "Whole run (process start to exit, median), nkprobe's whole run over the tool's (median of the "
        "per-round ratios: paired), packets sent (median), hop list right (runs):",
        "",
        "| path | protocol | tool | wall ms | nkprobe / tool | packets | hops right |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (label, protocol, tool), runs in res.runs.items():
        ok = sum(r.correct for r in runs)
        ratio = "" if tool.startswith("nkprobe") else f"{med(ratios(res, label, protocol, tool)):.2f}"
        lines.append(
            f"| {label} | {protocol} | {tool} | {med([r.wall_s * 1000 for r in runs]):.0f} | {ratio} | "
            f"{med([float(r.packets) for r in runs]):.0f} | {ok}/{len(runs)} |"
        )
    lines += [
        "",
        "`nkprobe trace` against the targets: whole run <= 1.0 x traceroute of the same protocol (median "
        "of the paired ratios); probes <= 1.5 x the hop count; the in-process trace time (first probe to "
        "result, median) for comparison:",
        "",
        "| path | protocol | in-process ms | vs traceroute | met | probes / hops | met |",
        "| --- | --- | ---: | ---: | --- | ---: | --- |",
    ]
    for (label, protocol), times in res.in_process.items():
        reference = next(t for (lb, pr, t) in res.runs if lb == label and pr == protocol
                         and t.startswith("traceroute"))  # fmt: skip
        vs_tr = med(ratios(res, label, protocol, reference))
        ours = res.runs[(label, protocol, "nkprobe trace")]
        hops = res.hops.get(label, 0)
        per_hop = med([r.packets / hops for r in ours]) if hops else float("nan")
        lines.append(
            f"| {label} | {protocol} | {med(times) * 1000:.0f} | {vs_tr:.2f} | "
            f"{'yes' if vs_tr <= 1.0 else 'NO'} | {per_hop:.2f} | {'yes' if per_hop <= 1.5 else 'NO'} |"
        )
    cfg = ", ".join(f"{u} {med(v):+.2f} ms" for u, v in res.rtt_error_cfg_ms.items())
    wire = res.rtt_error_wire_ms
    lines += [
        "",
        f"- RTT error, median: vs the configured delay {cfg} (this includes the lab's userspace delay links, "
        "whose own overhead shows in `ping` too); vs the interface capture of the same packets "
        + (f"{med(wire):+.3f} ms (max {max(wire):+.3f} ms, {len(wire)} echoes)" if wire else "n/a")
        + " (target <= 0.3 ms); "
        + res.rtt_compare
        + ": the offset from the configured delay is the lab's, not ours.",
        f"- CPU per probe, sustained: {res.cpu_us_per_probe:.0f} us ({res.sustained}); target <= 100 us: "
        f"{'met' if res.cpu_us_per_probe <= 100 else 'NOT met'}. Interpreter: {sys.executable} (Python "
        f"{platform.python_version()}).",
        *(f"- The same sustained run under {line}" for line in res.other_pythons),
        f"- Peak RSS of `nkprobe trace` (max over runs): {rss_kb / 1024:.1f} MB; target <= 60 MB: "
        f"{'met' if rss_kb <= 60 * 1024 else 'NOT met'}.",
        f"- Load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text.rstrip("\n") + ("\n\n" + old[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(new.rstrip("\n") + "\n")


def sustained_runs(lab: LabInfo, traces: int, runs: int = 3) -> list[tuple[float, str]]:
    """`runs` sustained runs (the machine is shared: CPU time per probe varies between runs), sorted."""
    out = []
    for _ in range(runs):
        one = Results()
        asyncio.run(sustained(lab, one, traces))
        out.append((one.cpu_us_per_probe, one.sustained))
    return sorted(out)


def other_python(python: str, prefix: str, traces: int) -> str:
    """The sustained runs under another interpreter (with this package importable), as a report line."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from bench import trace_bench as tb; "
        "from agent.lab import info; import platform; "
        "runs = tb.sustained_runs(info.load(sys.argv[2]), int(sys.argv[3])); "
        "print(json.dumps([platform.python_version(), [r[0] for r in runs], runs[1][1]]))"
    )
    done = subprocess.run([python, "-c", code, str(ROOT), prefix, str(traces)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    version, cpu, text = json.loads(done.stdout)
    return (
        f"{python} (Python {version}): {cpu[1]:.0f} us a probe ({text}; the three runs: "
        f"{', '.join(f'{c:.0f}' for c in cpu)} us a probe)."
    )


def lab_for(suffix: str, base: str) -> tuple[LabInfo, bool]:
    """The lab of a path: `base` itself for the default scenario, else `base` + suffix's first letters
    with bench/scenarios/<suffix>.toml (reused if up, else built; True: built here, take it down)."""
    prefix = base if not suffix else f"{base.rstrip('-')}{suffix[-3:]}-"
    try:
        return info.load(prefix), False
    except Exception:
        sc = scenario.load(str(SCENARIOS / f"{suffix}.toml")) if suffix else scenario.load()
        return build.up(prefix, sc), True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefix", default="nkp-b-", help="lab prefix (reused if up, else built and removed)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--traces", type=int, default=1000, help="traces in the sustained CPU run")
    ap.add_argument("--paths", default="all", help="comma-separated path numbers (1-based) of PATHS, or all")
    ap.add_argument(
        "--write", action="store_true", help="update the Probe engine section of bench/RESULTS.md"
    )
    ap.add_argument(
        "--compare-python", action="append", default=[], metavar="PYTHON",
        help="also run the sustained CPU measurement under this interpreter (agent importable), e.g. "
        "another venv's bin/python; repeatable",
    )  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("trace_bench: needs root (lab namespaces, raw sockets)", file=sys.stderr)
        return 2
    # Installed packages carry bytecode; a work tree run with PYTHONDONTWRITEBYTECODE would recompile
    # every module at each start and charge that to `nkprobe trace`'s wall time.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "agent")], check=False,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""}, stdout=subprocess.DEVNULL)  # fmt: skip
    chosen = list(PATHS) if args.paths == "all" else [PATHS[int(n) - 1] for n in args.paths.split(",")]
    res = Results()
    rss = 0
    backend = "?"
    for suffix in dict.fromkeys(bp.lab for bp in chosen):
        lab, built = lab_for(suffix, args.prefix)
        backend = lab.delay_backend
        try:
            dev = vantage_dev(lab)
            config = str(lab.config_file)
            mine = [bp for bp in chosen if bp.lab == suffix]
            for _ in range(args.rounds):
                for bp in mine:
                    target = lab.prefixes[UPSTREAM_PREFIX[bp.upstream]].echo_host
                    expected = lab.expected_hops(target, bp.upstream)
                    res.hops[bp.label] = len(expected)
                    for protocol in PROTOCOLS:
                        for tool, cmd in tool_commands(protocol, target, config).items():
                            res.runs[(bp.label, protocol, tool)].append(
                                run_tool(lab, dev, cmd, parser_for(tool), expected)
                            )
                            if tool.startswith("nkprobe"):
                                rss = max(rss, peak_rss_kb(lab, cmd))
            asyncio.run(in_process(lab, res, args.rounds, mine))
            if not suffix:
                asyncio.run(rtt_vs_wire(lab, dev, res))
                # The median of three sustained runs is reported.
                runs = sustained_runs(lab, args.traces)
                res.cpu_us_per_probe, res.sustained = runs[1]
                res.sustained += f"; the three runs: {', '.join(f'{r[0]:.0f}' for r in runs)} us a probe"
                res.other_pythons = [
                    other_python(python, args.prefix, args.traces) for python in args.compare_python
                ]
        finally:
            if built:
                build.down(lab.prefix)
    text = report(res, args.rounds, rss, backend)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
