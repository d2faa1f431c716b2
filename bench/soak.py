"""Soak: the agent against the lab for a long while, flipping now and then; memory, CPU, files, faults.

    sudo /opt/nkvenv/bin/python bench/soak.py [--duration 3600] [--flip-every 300] [--write]

Runs `nkprobe run` with the lab's config.toml as it is (8 targets, ping 1 s, trace 10 s, max_pps 50) on
a lab of its own (NKPROBE_LAB_PREFIX, default "nkp-soak-"; built if absent), flips 198.19.179.0/24 every
`--flip-every` seconds, and samples the agent process every 10 s: resident memory, CPU time, open file
descriptors, threads, and the time a scrape takes. At the end: memory growth after warm-up, CPU share,
one change and one history row per flip and host, no errors, no faults. Not part of CI.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._agent_lab import bench_lab, machine, write_section
from tests.support.agent_harness import Agent, agent_config, history, lab_flip

FLIP_TARGETS = ("198.19.179.10", "198.19.179.20")
PREFIX = "198.19.179.0/24"
SAMPLE_S = 10.0


def proc_sample(pid: int) -> tuple[float, float, int, int]:
    """(RSS MiB, CPU seconds, open fds, threads) of `pid` from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
    threads = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("Threads:"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, cpu, fds, threads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--flip-every", type=float, default=300.0)
    parser.add_argument("--write", action="store_true", help="write the Soak part of bench/RESULTS.md")
    args = parser.parse_args()
    prefix = os.environ.get("NKPROBE_LAB_PREFIX", "nkp-soak-")
    samples: list[tuple[float, float, float, int, int, float]] = []  # t, rss, cpu, fds, threads, scrape
    flips = 0
    with bench_lab(prefix) as lab, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data = agent_config(
            lab, directory, state_dir=directory / "state", ping_interval_s=1.0, trace_interval_s=10.0
        )
        lab_flip(lab, "china_unicom")
        agent = Agent(lab, data, directory / "agent.log").start()
        assert agent.proc is not None
        start = time.monotonic()
        next_flip = start + args.flip_every
        upstream = "china_unicom"
        try:
            while (now := time.monotonic()) - start < args.duration:
                if now >= next_flip:
                    upstream = "transtelecom" if upstream == "china_unicom" else "china_unicom"
                    lab_flip(lab, upstream)
                    flips += 1
                    next_flip += args.flip_every
                t0 = time.monotonic()
                agent.scrape()
                scrape = time.monotonic() - t0
                samples.append((now - start, *proc_sample(agent.proc.pid), scrape))
                time.sleep(SAMPLE_S)
            time.sleep(30)  # let the last flip settle
            final = agent.scrape()
            run_s = time.monotonic() - start  # the packet counter covers all of it, settling included
            rows = [r for r in history(data) if r["prefix"] == PREFIX]
        finally:
            code = agent.stop()
            lab_flip(lab, "china_unicom")
    changes = [final[("nkprobe_path_changes_total", frozenset({"target": t, "prefix": PREFIX}.items()))]
               for t in FLIP_TARGETS]  # fmt: skip
    errors = {dict(k[1])["kind"]: v for k, v in final.items() if k[0] == "nkprobe_errors_total"}
    faults = {dict(k[1])["kind"]: v for k, v in final.items() if k[0] == "nkprobe_fault"}
    packets = sum(v for (name, _), v in final.items() if name == "nkprobe_packets_sent_total")
    elapsed = samples[-1][0] - samples[0][0]
    warm = [s for s in samples if s[0] >= min(300.0, elapsed / 4)]
    rss_warm, rss_end = warm[0][1], samples[-1][1]
    cpu_share = (samples[-1][2] - samples[0][2]) / elapsed * 100 if elapsed else 0.0
    ok = (
        all(c == flips for c in changes)
        and len(rows) == 2 * flips
        and not any(errors.values())
        and not any(faults.values())
        and code == 0
        and rss_end - rss_warm < 20.0
    )
    scrape_med = statistics.median(s[5] for s in samples) * 1000
    scrape_max = max(s[5] for s in samples) * 1000
    body = f"""
`sudo /opt/nkvenv/bin/python bench/soak.py --duration {args.duration:g} --flip-every {args.flip_every:g}`,
{machine()}. The lab's config.toml as written by `lab up` (8 targets, ping 1 s, trace 10 s, max_pps 50).

| measurement | result | expected |
| --- | --- | --- |
| run time | {elapsed / 60:.1f} min, {len(samples)} samples | |
| flips | {flips} | |
| nkprobe_path_changes_total of the two hosts | {", ".join(str(int(c)) for c in changes)} | {flips} each |
| history rows for 198.19.179.0/24 | {len(rows)} | {2 * flips} |
| resident memory after warm-up -> at the end | {rss_warm:.1f} -> {rss_end:.1f} MiB | growth < 20 MiB |
| peak resident memory | {max(s[1] for s in samples):.1f} MiB | |
| CPU | {cpu_share:.1f} % of one core | |
| open file descriptors (min / max) | {min(s[3] for s in samples)} / {max(s[3] for s in samples)} | flat |
| threads (min / max) | {min(s[4] for s in samples)} / {max(s[4] for s in samples)} | flat |
| scrape time, with parsing it in the bench (median / max) | {scrape_med:.1f} / {scrape_max:.1f} ms | |
| packets sent | {int(packets)} in {run_s / 60:.1f} min ({packets / run_s:.1f}/s) | <= 50/s |
| errors / faults at the end | {errors} / {faults} | all 0 |
| exit status after SIGTERM | {code} | 0 |

Verdict: {"all as expected" if ok else "NOT AS EXPECTED (see the rows above)"}.
"""
    print(body)
    if args.write:
        write_section("Soak", body)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
