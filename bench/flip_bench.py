"""Flip-to-metric latency: `nkprobe lab flip` until the agent's /metrics shows the new upstream.

    sudo /opt/nkvenv/bin/python bench/flip_bench.py [--flips 10] [--write]

Runs `nkprobe run` against a lab of its own (NKPROBE_LAB_PREFIX, default "nkp-bf-"; built if absent)
with the lab's config.toml and the default intervals of the contract (ping 1 s, trace 60 s), so the
periodic trace cannot be what finds a flip: the latency probes' triggers must. Each flip is timed from
the moment `lab flip` returned to the first scrape where nkprobe_path_upstream of both hosts of
198.19.179.0/24 shows the new upstream (scrapes every 0.2 s). Targets: median < 10 s, worst < 20 s.
Not part of CI. Never probes anything but the lab.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._agent_lab import bench_lab, machine, write_section
from tests.support.agent_harness import Agent, agent_config, lab_flip, wait_for

FLIP_TARGETS = ("198.19.179.10", "198.19.179.20")
PREFIX = "198.19.179.0/24"


def tag(agent: Agent, target: str) -> str | None:
    samples = agent.scrape()
    for t in ("china_unicom", "transtelecom", "other", "unknown"):
        key = (
            "nkprobe_path_upstream",
            frozenset({"target": target, "prefix": PREFIX, "upstream": t}.items()),
        )
        if samples.get(key) == 1.0:
            return t
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=10)
    parser.add_argument("--max-pps", type=float, default=None, help="override the lab config's agent.max_pps")
    parser.add_argument("--write", action="store_true", help="write the Agent section of bench/RESULTS.md")
    args = parser.parse_args()
    prefix = os.environ.get("NKPROBE_LAB_PREFIX", "nkp-bf-")
    rng = random.Random(1)
    with bench_lab(prefix) as lab, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        extra = {"max_pps": args.max_pps} if args.max_pps else {}
        config = agent_config(
            lab, directory, state_dir=directory / "state", ping_interval_s=1.0, trace_interval_s=60.0, **extra
        )
        lab_flip(lab, "china_unicom")
        agent = Agent(lab, config, directory / "agent.log").start()
        latencies: list[float] = []
        try:
            wait_for(lambda: all(tag(agent, t) == "china_unicom" for t in FLIP_TARGETS), 60, "no first tag")
            upstream = "china_unicom"
            for n in range(args.flips):
                time.sleep(rng.uniform(5.0, 15.0))
                upstream = "transtelecom" if upstream == "china_unicom" else "china_unicom"
                lab_flip(lab, upstream)
                took = wait_for(
                    lambda u=upstream: all(tag(agent, t) == u for t in FLIP_TARGETS),
                    120,
                    "flip never seen",
                    0.2,
                )
                latencies.append(took)
                print(f"flip {n + 1}: {upstream} seen after {took:.1f} s", flush=True)
            changes = [
                agent.value("nkprobe_path_changes_total", target=t, prefix=PREFIX) for t in FLIP_TARGETS
            ]
            packets = sum(
                v for (name, _), v in agent.scrape().items() if name == "nkprobe_packets_sent_total"
            )
        finally:
            agent.stop()
            lab_flip(lab, "china_unicom")
    med, worst = statistics.median(latencies), max(latencies)
    ok = med < 10.0 and worst < 20.0 and all(c == args.flips for c in changes)
    flags = f"--flips {args.flips}" + (f" --max-pps {args.max_pps:g}" if args.max_pps else "")
    pps = f"{args.max_pps:g}" if args.max_pps else "50 as the lab config has it"
    series = ", ".join(f"{x:.1f}" for x in latencies)
    counts = ", ".join(str(int(c)) for c in changes)
    body = f"""
`sudo /opt/nkvenv/bin/python bench/flip_bench.py {flags}`, {machine()}.
The lab's config.toml (8 targets, max_pps {pps}) with the contract's default intervals:
ping 1 s, trace 60 s. Time from `nkprobe lab flip` returning to the first scrape (every 0.2 s) showing the
new upstream for both hosts of 198.19.179.0/24.

| measurement | result | target |
| --- | --- | --- |
| flips | {args.flips}, 5-15 s apart | |
| **median flip-to-metric** | **{med:.1f} s** | < 10 s |
| **worst flip-to-metric** | **{worst:.1f} s** | < 20 s |
| all | {series} s | |
| nkprobe_path_changes_total of the two hosts | {counts} | {args.flips} each |
| packets sent in the run | {int(packets)} | |

Verdict: {"targets met" if ok else "TARGETS MISSED"}.
"""
    print(body)
    if args.write:
        write_section("Flip-to-metric latency", body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
