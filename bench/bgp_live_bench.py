"""The agent's CPU and memory with the live BGP view off and on, and its replay-to-trace time.

    sudo .venv/bin/python bench/bgp_live_bench.py [--seconds 60] [--rate 10] [--write]

Runs `nkprobe run` against a lab of its own (NKPROBE_LAB_PREFIX, default "nkp-bb-"; built if absent)
with the lab's config (every host, ping 1 s, trace 60 s) twice: `[bgp] live = false`, then live, pointed
at the tests' local RIS Live and RIPEstat stand-ins (tests/support/ristest.py) on loopback, which send
`--rate` RIS Live UPDATEs a second for the lab's /24s (RIS Live sends a few a minute for the real /22;
the rate is a stress). CPU is utime + stime of the agent process over `--seconds` after a 10 s warm-up;
memory is VmRSS at the end and VmHWM (/proc/PID/status). Not part of CI. Never sends anything but to the
lab and to loopback.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._agent_lab import bench_lab, machine, write_section
from tests.support.agent_harness import Agent, agent_config, lab_flip, wait_for
from tests.support.ristest import PEERS, RipestatData, RipestatServer, RisLiveServer, update

LAB_SLASH24S = ("198.19.176.0/24", "198.19.177.0/24", "198.19.178.0/24", "198.19.179.0/24")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (proc(5) fields 14, 15)


def memory_mib(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def run(lab: object, directory: Path, live: bool, seconds: float, rate: float) -> dict[str, float]:
    rng = random.Random(1)
    data = RipestatData({(c, ip): dict.fromkeys(LAB_SLASH24S, f"{asn} 4837 131279") for c, ip, asn in PEERS})
    data.seeing = dict.fromkeys(LAB_SLASH24S, (300, 320))
    data.rpki = dict.fromkeys(LAB_SLASH24S, "valid")
    with RisLiveServer() as ris, RipestatServer(data) as stat:
        config = agent_config(lab, directory, state_dir=directory / "state", ping_interval_s=1.0,  # type: ignore[arg-type]
                              trace_interval_s=60.0)  # fmt: skip
        if live:
            text = f'[bgp]\nlive = true\nris_live_url = "{ris.url}"\nripestat_url = "{stat.url}"\n'
            config.write_text(config.read_text().replace("[bgp]\nlive = false\n", text, 1))
        agent = Agent(lab, config, directory / "agent.log").start()  # type: ignore[arg-type]
        assert agent.proc is not None
        pid = agent.proc.pid
        try:
            if live:
                wait_for(lambda: ris.subscriptions, 20, "the live view never subscribed")
            time.sleep(10)  # warm-up: first rounds, imports
            start_cpu, start = cpu_s(pid), time.monotonic()
            sent = 0
            while time.monotonic() - start < seconds:
                if live:
                    peer = rng.choice(PEERS)
                    upstream = rng.choice((4837, 4837, 20485))
                    prefix = rng.choice(LAB_SLASH24S[:3])  # the flip /24 is left alone
                    ris.send(update(peer, (peer[2], upstream, 131279), announce=[prefix]))
                    sent += 1
                time.sleep(1 / rate)
            elapsed = time.monotonic() - start
            used = cpu_s(pid) - start_cpu
            rss, hwm = memory_mib(pid)
            applied = agent.value("nkprobe_bgp_messages_total", outcome="applied") if live else 0.0
        finally:
            assert agent.stop() == 0, agent.log()
    return {"cpu_pct": 100 * used / elapsed, "rss": rss, "hwm": hwm, "sent": sent, "applied": applied}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0, help="RIS Live UPDATEs a second (live run)")
    parser.add_argument("--write", action="store_true", help="write the section of bench/RESULTS.md")
    args = parser.parse_args()
    prefix = os.environ.get("NKPROBE_LAB_PREFIX", "nkp-bb-")
    rows = []
    with bench_lab(prefix) as lab, tempfile.TemporaryDirectory() as tmp:
        lab_flip(lab, "china_unicom")
        for live in (False, True):
            directory = Path(tmp) / ("on" if live else "off")
            directory.mkdir()
            r = run(lab, directory, live, args.seconds, args.rate)
            name = "on" if live else "off"
            print(f"live view {name}: CPU {r['cpu_pct']:.1f} %, RSS {r['rss']:.1f} MiB "
                  f"(peak {r['hwm']:.1f}), {r['applied']:.0f} of {r['sent']} RIS Live messages applied",
                  flush=True)  # fmt: skip
            rows.append(
                f"| {name} | {r['cpu_pct']:.1f} % | {r['rss']:.1f} MiB | {r['hwm']:.1f} MiB | "
                f"{r['applied']:.0f} / {r['sent']} |"
            )
    if args.write:
        body = (
            f"`bench/bgp_live_bench.py --seconds {args.seconds:g} --rate {args.rate:g}` ({machine()}): "
            "the agent on the lab's eight hosts (ping 1 s, trace 60 s), with the live BGP view off and on "
            f"(local RIS Live stand-in sending {args.rate:g} UPDATEs/s, a stress: the real /22 sees a few "
            "a minute). CPU over the run after a 10 s warm-up; memory from /proc/PID/status.\n\n"
            "| live view | CPU | RSS | peak RSS | messages applied / sent |\n"
            "| --- | --- | --- | --- | --- |\n" + "\n".join(rows)
        )
        write_section("Live BGP view", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
