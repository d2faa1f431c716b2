"""The status page's size and build time with 8 and 50 targets (README "Status page").

    .venv/bin/python bench/status_bench.py [--targets 8,50] [--runs 20] [--every S]

No lab and no root: the agent's results are a real Results store filled as rounds fill it (18-hop paths like
the real ones from Europe, 4 flows per round, latency probes), the history a real SQLite file written by
the agent's HistoryStore with 30 days of changes, by default one every 15 minutes per target (a flapping
path, the worst case: the last 24 h hold 96 per target, more than the page draws; `--every 86400` for a
calm one). Measured: the page's bytes (HTML, gzipped, /status.json), one build without cache (history
read + model + HTML + JSON, as a page load after the cache expired), and one cached load (what every
other load within 2 s costs). Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import Any

from agent.exporter.status import StatusSource
from agent.history import HistoryStore, PathChange
from agent.model import (
    Border,
    Classification,
    Hop,
    PingResult,
    Protocol,
    Reply,
    ReplyKind,
    Target,
)
from agent.model import Path as TracePath
from agent.results import Results
from agent.tracking.hysteresis import TagHysteresis, tag_values

CU, TTK = "china_unicom", "transtelecom"
TAGS = tag_values([CU, TTK])
NOW = time.time()
HOPS = 18
EVIDENCE = (
    "hop 14 219.158.3.41 is AS4837 (china_unicom); AS4837 is china_unicom's; hop 13 219.158.97.2 before it "
    "is china_unicom's too (AS4837)",
    "before it, hop 13 219.158.97.2 is AS4837 (china_unicom)",
    "hop 15 175.45.176.1 is in 175.45.176.0/22, AS131279",
)


def tagged(ps: TagHysteresis) -> dict[str, Any]:
    """What the agent records of a target's tag after a round (agent.agent, Results.record_path)."""
    st = ps.status
    return {"tag": st.tag, "ratio": st.ratio, "changes": st.changes, "last_change_at": st.last_change_at}


def target_list(n: int) -> tuple[Target, ...]:
    return tuple(Target(f"175.45.{176 + i % 4}.{10 + i // 4}", f"host-{i}") for i in range(n))


def path_of(address: str) -> tuple[TracePath, Classification]:
    def router(ttl: int) -> Hop:
        if ttl in (5, 16):
            return Hop(ttl, (), 2)  # silent, as real paths have a few
        address = f"10.{ttl}.0.1" if ttl < 14 else f"219.158.{ttl}.1"
        return Hop(ttl, (Reply(address, 0.01 * ttl, ReplyKind.TIME_EXCEEDED),), 1)

    hops = (
        *(router(ttl) for ttl in range(1, HOPS)),
        Hop(HOPS, (Reply(address, 0.290, ReplyKind.TCP_SYNACK),), 1),
    )
    c = Classification(CU, Border(14, "219.158.14.1", 4837), (3320, 1299, 4837, 131279), EVIDENCE, "high")
    return TracePath(address, Protocol.TCP, 2, hops, True, NOW - 20, 2.1), c


def state_of(targets: tuple[Target, ...]) -> Results:
    state = Results(agent_name="pi-1", version="bench", targets=targets, ping_protocols=("tcp", "icmp"),
                    trace_protocol="tcp", tags=TAGS, wall=lambda: NOW - 3 * 86400)  # fmt: skip
    for t in targets:
        ps = TagHysteresis(tags=TAGS)
        ps.observe([CU, CU, CU, TTK], NOW - 120)
        ps.observe([CU, CU, CU, CU], NOW - 60)
        path, c = path_of(t.address)
        state.record_path(t.address, **tagged(ps), hops=HOPS, reached=True, border_rtt={}, confidence="high",
                          path=path, classification=c)  # fmt: skip
        for n in range(40):
            state.record_ping(PingResult(t.address, Protocol.TCP, NOW - 40 + n, 0.29 if n % 9 else None))
            state.record_ping(PingResult(t.address, Protocol.ICMP, NOW - 40 + n, 0.288))
    return state


def write_history(state_dir: str, targets: tuple[Target, ...], days: int = 30, every_s: float = 900) -> int:
    store = HistoryStore(state_dir)
    store.open()
    rows = 0
    try:
        for t in targets:
            batch = []
            steps = int(days * 86400 / every_s)
            for i in range(steps):
                old, new = (CU, TTK) if i % 2 else (TTK, CU)
                at = NOW - days * 86400 + i * every_s
                as_path = (3320, 1299, 4837, 131279)
                batch.append(PathChange(at, "pi-1", t.address, t.prefix, old, new, as_path, (), EVIDENCE))
            store.insert(batch)
            rows += len(batch)
    finally:
        store.close()
    return rows


def measure(n: int, runs: int, every_s: float) -> dict[str, float]:
    targets = target_list(n)
    state = state_of(targets)
    with tempfile.TemporaryDirectory() as d:
        rows = write_history(d, targets, every_s=every_s)
        cold = StatusSource(state.snapshot, state_dir=lambda: d, asn_of=lambda _a: 4837, max_pps=lambda: 20,
                            page_ttl_s=0.0, history_ttl_s=0.0)  # fmt: skip
        cold.html()  # imports and the first SQLite open out of the way
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            cold.html()
            times.append(time.perf_counter() - start)
        warm = StatusSource(state.snapshot, state_dir=lambda: d, page_ttl_s=3600.0, history_ttl_s=3600.0)
        warm.html()
        start = time.perf_counter()
        for _ in range(1000):
            warm.html()
        cached = (time.perf_counter() - start) / 1000
        return {"targets": n, "rows": rows, "html": len(cold.html()), "json": len(cold.json()),
                "html_gz": len(cold.gzipped("html")),
                "build_ms": statistics.median(times) * 1000, "build_max_ms": max(times) * 1000,
                "cached_us": cached * 1e6}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="8,50")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--every", type=float, default=900.0, help="seconds between changes (default 900)")
    args = parser.parse_args()
    results = [measure(int(n), args.runs, args.every) for n in args.targets.split(",")]
    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    print(f"`bench/status_bench.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, "
          f"{os.cpu_count()} CPUs shared with other jobs, Python {platform.python_version()} "
          f"(load average {os.getloadavg()[0]:.1f}).\n")  # fmt: skip
    print("| targets | history rows | HTML (gzip) | /status.json | build, median (max) | cached load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        size = f"{r['html'] / 1000:.0f} KB ({r['html_gz'] / 1000:.0f} KB) | {r['json'] / 1000:.0f} KB"
        print(f"| {r['targets']} | {r['rows']} | {size} | "
              f"{r['build_ms']:.1f} ms ({r['build_max_ms']:.1f} ms) | {r['cached_us']:.1f} µs |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
