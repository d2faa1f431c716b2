"""Start-up and shutdown of `nkprobe trace`, and the whole run of `nkprobe --version` (issue 25, point 4).

    sudo .venv/bin/python bench/startup.py [--runs 30] [--target 198.19.176.10] [--trace-args "--json"]

Run as root: it builds (or reuses) a lab of its own (NKPROBE_LAB_PREFIX, default "nkp-s-") and runs every
command inside the lab's vantage namespace. A thread that has joined the namespace spawns the commands
itself (posix_spawn, no `ip netns exec` wrapper whose own exec and mount set-up would be counted), so
the child starts in the namespace with nothing in between.

For each `nkprobe trace TARGET --config LAB-CONFIG` run it takes, on one clock (CLOCK_REALTIME):
- the spawn time (just before posix_spawn) and the exit time (when wait4 returns);
- the first probe (the first outgoing frame to TARGET) and the last reply (the last incoming ICMP or
  TCP frame to the vantage address) from an AF_PACKET capture on the vantage interface, stamped by the
  kernel as each frame passes the device (agent.lab.capture), independent of the code under test;
and reports start-up (spawn to first probe), shutdown (last reply to exit), their sum, and the trace
itself (first probe to last reply): median and p90. Only frames before the exit count: answers to probes
the trace no longer waits for (past the destination) that arrive while the process is exiting moved the
"last reply" later as long as the exit took longer than they did, so compare whole runs too. Beside
it, whole-process times of `nkprobe --version`, `python3 -c pass` and `python3 -I -S -c pass` for
scale. Each command runs two ways:
- "venv": the console scripts of the venv this bench runs in (an editable install adds an import hook
  to `site`, about 10 ms on this machine);
- "deb": Debian's /usr/bin/python3 (--base-python) with the source tree on PYTHONPATH and pip's console
  script, which is how the .deb installs it (/usr/bin/nkprobe, the package in dist-packages, no hook).
The commands run in turn (A B C ..., A B C ...), so load from other work spreads over all of them.
Target (issue 25): start-up + shutdown <= 60 ms; `nkprobe --version` <= 35 ms. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.lab.capture import Capture, Frame
from agent.lab.info import LabInfo
from agent.net.netns import call_in_netns
from bench._agent_lab import bench_lab, machine

ROOT = Path(__file__).resolve().parent.parent
STARTUP_BUDGET_MS = 60.0
VERSION_BUDGET_MS = 35.0
BASE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# pip's console script (what `pip install` and pybuild write as bin/nkprobe), run by the base interpreter.
CONSOLE_SCRIPT = """\
import re
import sys
from agent.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""
IPPROTO_ICMP, IPPROTO_TCP = 1, 6


@dataclass(frozen=True)
class Command:
    label: str
    argv: tuple[str, ...]
    env: dict[str, str]
    trace: bool  # a trace: find its first probe and last reply in the capture


@dataclass(frozen=True)
class Run:
    wall_ms: float
    ok: bool
    startup_ms: float | None = None  # spawn to first probe
    shutdown_ms: float | None = None  # last reply to exit
    trace_ms: float | None = None  # first probe to last reply


def commands(
    lab: LabInfo, target: str, trace_args: list[str], console: Path, *, base: str, baseline: Path | None
) -> list[Command]:
    venv_bin = Path(sys.executable).parent
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    deb_env = {**env, "PYTHONPATH": str(ROOT)}
    trace = ["trace", target, "--config", str(lab.config_file), *trace_args]
    venv_nkprobe = str(venv_bin / "nkprobe")
    cmds = [
        Command(f"{base} -I -S -c pass", (base, "-I", "-S", "-c", "pass"), env, False),
        Command(f"{base} -c pass", (base, "-c", "pass"), env, False),
        Command("venv python -c pass", (sys.executable, "-c", "pass"), env, False),
        Command("nkprobe --version (venv)", (venv_nkprobe, "--version"), env, False),
        Command("nkprobe --version (deb)", (base, str(console), "--version"), deb_env, False),
        Command("nkprobe trace (venv)", (venv_nkprobe, *trace), env, True),
        Command("nkprobe trace (deb)", (base, str(console), *trace), deb_env, True),
    ]
    if baseline is not None:  # another source tree, run the .deb way in the same rounds: before / after
        old_env = {**env, "PYTHONPATH": str(baseline)}
        cmds += [
            Command("nkprobe --version (deb, baseline)", (base, str(console), "--version"), old_env, False),
            Command("nkprobe trace (deb, baseline)", (base, str(console), *trace), old_env, True),
        ]
    return cmds


def spawn_and_wait(cmd: Command, out: Path) -> tuple[int, int, int]:
    """(spawn time, exit time, wait status), times in CLOCK_REALTIME ns like the capture's stamps."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(out), flags, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, str(out) + ".err", flags, 0o600),
    ]
    started = time.time_ns()
    pid = os.posix_spawn(cmd.argv[0], list(cmd.argv), cmd.env, file_actions=actions)
    _pid, status, _usage = os.wait4(pid, 0)
    return started, time.time_ns(), status


def trace_times(
    frames: list[Frame], started: int, ended: int, target: str, vantage: str
) -> tuple[float, float, float] | None:
    """(start-up, shutdown, trace) in ms from the frames seen between spawn and exit."""
    mine = [f for f in frames if started <= f.time_ns <= ended]
    probes = [f.time_ns for f in mine if f.outgoing and f.dst == target]
    replies = [f.time_ns for f in mine if not f.outgoing and f.dst == vantage
               and f.data[9] in (IPPROTO_ICMP, IPPROTO_TCP)]  # fmt: skip
    if not probes or not replies:
        return None
    first, last = min(probes), max(replies)
    return (first - started) / 1e6, (ended - last) / 1e6, (last - first) / 1e6


def vantage_dev(lab: LabInfo, target: str) -> str:
    out = subprocess.run(["ip", "-n", lab.vantage_ns, "-o", "route", "get", target],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    words = out.split()
    return words[words.index("dev") + 1]


def measure(lab: LabInfo, target: str, cmds: list[Command], runs: int, dev: str) -> dict[str, list[Run]]:
    """Every command `runs` times in turn; called on a thread inside the vantage namespace."""
    results: dict[str, list[Run]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="nkprobe-startup-") as tmp:
        out = Path(tmp) / "out"
        for cmd in cmds:  # one untimed run each: page cache and __pycache__ warm, as on a host in use
            spawn_and_wait(cmd, out)
        with Capture(dev) as cap:
            for _ in range(runs):
                for cmd in cmds:
                    started, ended, status = spawn_and_wait(cmd, out)
                    ok = os.waitstatus_to_exitcode(status) == 0
                    run = Run((ended - started) / 1e6, ok)
                    if cmd.trace:
                        time.sleep(0.05)  # the capture thread reads the last frames (it polls every 50 ms)
                        got = trace_times(cap.frames, started, ended, target, lab.vantage_address)
                        run = Run(run.wall_ms, ok, *got) if got is not None else Run(run.wall_ms, False)
                    results[cmd.label].append(run)
    return dict(results)


def med_p90(values: list[float]) -> str:
    if not values:
        return "-"
    p90 = statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    return f"{statistics.median(values):.1f} / {p90:.1f}"


def report(results: dict[str, list[Run]], runs: int, command_line: str) -> str:
    lines = [
        f"`{command_line}`, {machine()}; {runs} runs of each command, in turn, inside the lab's vantage "
        "namespace. Milliseconds, median / p90.",
        "",
        "| command | whole run | start-up (spawn to first probe) | shutdown (last reply to exit) "
        "| start-up + shutdown | trace (first probe to last reply) | runs ok |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, rs in results.items():
        good = [r for r in rs if r.ok]
        starts = [r.startup_ms for r in good if r.startup_ms is not None]
        stops = [r.shutdown_ms for r in good if r.shutdown_ms is not None]
        both = [a + b for a, b in zip(starts, stops, strict=True)]
        traces = [r.trace_ms for r in good if r.trace_ms is not None]
        lines.append(
            f"| {label} | {med_p90([r.wall_ms for r in good])} | {med_p90(starts)} | {med_p90(stops)} "
            f"| {med_p90(both)} | {med_p90(traces)} | {len(good)}/{len(rs)} |"
        )
    lines += [
        "",
        f"Targets (issue 25): start-up + shutdown of `nkprobe trace` <= {STARTUP_BUDGET_MS:g} ms; "
        f"`nkprobe --version` <= {VERSION_BUDGET_MS:g} ms (whole run).",
    ]
    return "\n".join(lines)


@contextmanager
def console_script() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nkprobe-deb-") as tmp:
        path = Path(tmp) / "nkprobe"
        path.write_text(CONSOLE_SCRIPT)
        yield path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (default 30)")
    parser.add_argument("--target", default="198.19.176.10", help="lab address to trace (default: the "
                        "China-Unicom-like echo host: 6 hops, 40 ms, no silent hop, so the last reply "
                        "ends the trace)")  # fmt: skip
    parser.add_argument("--base-python", default=BASE_PYTHON, help="the interpreter of the .deb way "
                        f"(default {BASE_PYTHON}: Debian's, which the .deb depends on)")  # fmt: skip
    parser.add_argument("--baseline", type=Path, help="a source tree to compare with, run the .deb way in "
                        "the same rounds (e.g. `git archive main | tar -x -C /tmp/main`)")  # fmt: skip
    parser.add_argument("--trace-args", default="", help='more `nkprobe trace` arguments, e.g. "--json"')
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/startup.py: run as root (it builds a lab of namespaces)", file=sys.stderr)
        return 2
    socket.inet_aton(args.target)
    prefix = os.environ.get("NKPROBE_LAB_PREFIX", "nkp-s-")
    trace_args = shlex.split(args.trace_args)
    with bench_lab(prefix) as lab, console_script() as console:
        cmds = commands(lab, args.target, trace_args, console, base=args.base_python, baseline=args.baseline)
        dev = vantage_dev(lab, args.target)
        results = call_in_netns(lab.vantage_ns, lambda: measure(lab, args.target, cmds, args.runs, dev))
    command_line = "sudo .venv/bin/python bench/startup.py --runs " + str(args.runs)
    if args.baseline:
        command_line += f" --baseline {args.baseline}"
    if args.trace_args:
        command_line += f" --trace-args {shlex.quote(args.trace_args)}"
    print(report(results, args.runs, command_line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
