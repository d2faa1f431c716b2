#!/usr/bin/env python3
"""The fleet benchmark: N simulated agents (bench/fleet/sim.py) pushed by vmagent into a single-node
VictoriaMetrics (Debian's victoria-metrics package), all on 127.0.0.1, then every dashboard query timed.

    sudo .venv/bin/python bench/fleet/run.py --agents 1000 --hours 24 --write bench/RESULTS.md

1. Backfill: `hours` of history for every agent, `--step` seconds apart, POSTed with timestamps to
   vmagent's /api/v1/import/prometheus; vmagent remote-writes it into VictoriaMetrics. Ingestion rate,
   CPU and RSS of both are measured over this phase.
2. vmalert replays the central recording rules (deploy/central/rules/nkprobe.rules.yml) over the span,
   as the ruler would have written them.
3. Live: a second vmagent scrapes all N agents' real registries (one HTTP server on loopback, one path
   per agent) every 30 s, as each Pi's forwarder does, for `--live-s` seconds: the steady ingestion the
   central side sees, its CPU and RSS.
4. Every query of dashboards/*.json (panels, annotations, variables) over the last 24 h of the backfill,
   `--runs` times each, with VictoriaMetrics' cache off: p50 and p99.
5. Disk: the data directory after a flush, per sample and projected per 1,000 agents per month.

Nothing leaves 127.0.0.1; every wait is bounded; the processes are ours and stopped at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fleet import sim, vm  # noqa: E402

DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
RULES = REPO / "deploy" / "central" / "rules" / "nkprobe.rules.yml"
SCRAPE_INTERVAL_S = 30  # deploy/forwarder/forwarder.yml.in
TARGET_FOR_DETAIL = "175.45.178.56"


def grafana_vars(expr: str, step: float, agents: str = ".*") -> str:
    """Grafana's variables as a user would have them on a 24 h view with "All" selected (or, on the
    target dashboard, which has no "All", ten agents picked)."""
    # $__rate_interval = max($__interval + scrape interval, 4 x scrape interval) (Grafana docs).
    rate = max(step + SCRAPE_INTERVAL_S, 4 * SCRAPE_INTERVAL_S)
    for var, value in (
        ("$__rate_interval", f"{int(rate)}s"),
        ("$__interval", f"{int(step)}s"),
        ("$__range", "1d"),
        ("$agent", agents),
        ("$prefix", ".*"),
        ("$target", TARGET_FOR_DETAIL),
    ):
        expr = expr.replace(var, value)
    return expr


def dashboard_queries() -> list[dict[str, Any]]:
    """Every query Grafana sends for the three dashboards: panel targets, annotations, variables."""
    out: list[dict[str, Any]] = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        board = path.stem
        for panel in dash["panels"]:
            for t in panel.get("targets", []):
                out.append(
                    {
                        "where": f"{board}: {panel['title']}"
                        + (f" ({t['refId']})" if t["refId"] != "A" else ""),
                        "expr": t["expr"],
                        "instant": bool(t.get("instant")),
                        # The target dashboard's agent variable has no "All": ten agents picked.
                        "agents": "sim-000[0-9]" if board == "nkprobe-target" else ".*",
                    }
                )
        for a in dash["annotations"]["list"]:
            if "expr" in a:
                agents = "sim-000[0-9]" if board == "nkprobe-target" else ".*"
                where = f"{board}: annotation {a['name']}"
                out.append({"where": where, "expr": a["expr"], "instant": False, "agents": agents})
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((\w+), *(\w+)\)", v["definition"])
                assert m, v["definition"]
                out.append(
                    {"where": f"{board}: variable ${v['name']}", "label": m.group(2), "match": m.group(1)}
                )
    return out


def time_query(
    svc: vm.Service, q: dict[str, Any], start: float, end: float, step: float
) -> tuple[float, int]:
    """(seconds, series returned) for one run of one query."""
    t0 = time.perf_counter()
    if "label" in q:
        params = f"match[]={q['match']}&start={start:.0f}&end={end:.0f}"
        doc = json.loads(vm.http(f"{svc.url}/api/v1/label/{q['label']}/values?{params}"))
        n = len(doc["data"])
    elif q["instant"]:
        n = len(vm.query(svc, grafana_vars(q["expr"], step, q["agents"]), end))
    else:
        n = len(vm.query_range(svc, grafana_vars(q["expr"], step, q["agents"]), start, end, step))
    return time.perf_counter() - t0, n


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


class Meter:
    """CPU seconds and peak RSS of services between two points."""

    def __init__(self, *services: vm.Service) -> None:
        self.services = services
        self.t0 = time.monotonic()
        self.cpu0 = {s.name: s.cpu_rss()[0] for s in services}
        self.peak = {s.name: s.cpu_rss()[1] for s in services}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            for s in self.services:
                if s.proc.poll() is None:
                    self.peak[s.name] = max(self.peak[s.name], s.cpu_rss()[1])

    def stop(self) -> dict[str, tuple[float, int]]:
        """{name: (CPU share of one core over the interval, peak RSS bytes)}"""
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.t0
        return {
            s.name: ((s.cpu_rss()[0] - self.cpu0[s.name]) / wall, self.peak[s.name]) for s in self.services
        }


def backfill(sc: sim.Scenario, step: float, agent_svc: vm.Service, block: int) -> int:
    """Push the whole span, in time blocks of `block` steps, each agent's block one request."""
    fills = [sim.Backfill(sc, i) for i in range(sc.agents)]
    stamps = list(sim.times(sc, step))
    rows = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        pending: list[concurrent.futures.Future[None]] = []
        for b in range(0, len(stamps), block):
            for f in fills:
                body = b"".join(x for t in stamps[b : b + block] if (x := f.lines_at(t)) is not None)
                if not body:
                    continue
                rows += body.count(b"\n")
                pending.append(pool.submit(vm.push, agent_svc, body))
                if len(pending) > 8:  # bounded memory: at most 8 bodies in flight
                    pending.pop(0).result()
            print(
                f"  backfill {min(b + block, len(stamps))}/{len(stamps)} steps, {rows:,} rows",
                file=sys.stderr,
            )
        for p in pending:
            p.result()
    return rows


class Fleet(ThreadingHTTPServer):
    """All agents' real registries on one loopback port: /agent/<i>/metrics."""

    daemon_threads = True

    def __init__(self, agents: list[sim.Agent]) -> None:
        self.agents = agents
        super().__init__((vm.LOOPBACK, 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Fleet

    def do_GET(self) -> None:
        m = re.fullmatch(r"/agent/(\d+)/metrics", self.path)
        if not m or int(m.group(1)) >= len(self.server.agents):
            self.send_error(404)
            return
        body = self.server.agents[int(m.group(1))].exposition(time.time())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def scrape_config(path: Path, port: int, agents: int) -> None:
    """deploy/forwarder/forwarder.yml.in once per agent (its labels, honor_labels), in one file."""
    lines = [
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s",
        "  scrape_timeout: 10s",
        "scrape_configs:",
    ]
    lines += [
        "  - job_name: nkprobe",
        "    honor_labels: true",
        "    metrics_path: /metrics",
        "    static_configs:",
    ]
    for i in range(agents):
        name = sim.agent_name(i)
        lines += [
            f"      - targets: ['{vm.LOOPBACK}:{port}']",
            f"        labels: {{agent: {name}, __metrics_path__: /agent/{i}/metrics, instance: {name}}}",
        ]
    path.write_text("\n".join(lines) + "\n")


def live(sc: sim.Scenario, work: Path, central: vm.Service, seconds: float) -> dict[str, Any]:
    agents = [sim.Agent(sc, i) for i in range(sc.agents)]
    server = Fleet(agents)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg = work / "scrape.yml"
    scrape_config(cfg, server.server_address[1], sc.agents)
    forwarder = vm.start_vmagent(work / "live-vmagent", central.url + "/api/v1/write", cfg)
    try:
        time.sleep(
            SCRAPE_INTERVAL_S + 5
        )  # every target scraped once (vmagent spreads them over the interval)
        rows0, t0 = vm.rows_inserted(central), time.monotonic()
        meter = Meter(central, forwarder)
        time.sleep(seconds)
        usage = meter.stop()
        rate = (vm.rows_inserted(central) - rows0) / (time.monotonic() - t0)
        scrapes = forwarder.metrics()
        ok = sum(v for k, v in scrapes.items() if k.startswith("vm_promscrape_scrapes_total"))
        failed = sum(v for k, v in scrapes.items() if k.startswith("vm_promscrape_scrapes_failed_total"))
        return {"rate": rate, "usage": usage, "scrapes": ok, "failed": failed}
    finally:
        forwarder.stop()
        server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agents", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--step", type=float, default=30.0, help="seconds between backfilled samples")
    ap.add_argument("--query-step", type=float, default=60.0, help="range query resolution")
    ap.add_argument("--live-s", type=float, default=180.0)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--block", type=int, default=40, help="steps per import request")
    ap.add_argument("--work", type=Path, help="keep the data here (default: a temporary directory)")
    ap.add_argument("--write", type=Path, help="replace the Fleet section of this RESULTS.md")
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --work of an earlier run: keep its data and measurements, replay the rules and time "
        "the queries again (after a dashboard or rule change)",
    )
    args = ap.parse_args()
    for name in ("victoria-metrics", "vmagent", "vmalert"):
        if vm.tool(name) is None:
            print(f"{name} not found: apt-get install victoria-metrics", file=sys.stderr)
            return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="nkprobe-fleet-"))
    if args.reuse:
        results: dict[str, Any] = json.loads((work / "results.json").read_text())
        end, span = float(results["end"]), results["hours"] * 3600
        sc = sim.Scenario(results["agents"], end - span, end, flip_at=end - span / 3)
        results["runs"] = args.runs
    else:
        sc = sim.Scenario.ending_now(args.agents, args.hours * 3600)
        results = {"agents": args.agents, "hours": args.hours, "step": args.step, "runs": args.runs}
        results["end"] = sc.end
    central = vm.start_victoria_metrics(work / "vm")
    try:
        if not args.reuse:
            ingest(results, sc, central, work, args)
        measure_queries(results, sc, central, work, args)
    finally:
        central.stop()
    text = report(results)
    print(text)
    if args.write:
        write_section(args.write, text)
    (work / "results.json").write_text(json.dumps(results, indent=2, default=str))
    return 0


def ingest(
    results: dict[str, Any], sc: sim.Scenario, central: vm.Service, work: Path, args: argparse.Namespace
) -> None:
    pusher = vm.start_vmagent(work / "vmagent", central.url + "/api/v1/write")
    try:
        print(f"backfill: {sc.agents} agents x {args.hours} h at {args.step:g} s", file=sys.stderr)
        meter = Meter(central, pusher)
        t0 = time.monotonic()
        rows = backfill(sc, args.step, pusher, args.block)
        vm.wait_rows(central, rows, timeout=3600)
        results["backfill"] = {"rows": rows, "wall": time.monotonic() - t0, "usage": meter.stop()}
    finally:
        pusher.stop()
    results["series"] = {
        "per_agent": sim.Backfill(sc, 0).series,
        "active": len(vm.query(central, '{__name__=~"nkprobe_.+"}', sc.end)),
    }
    print(f"live: vmagent scraping {sc.agents} registries for {args.live_s:g} s", file=sys.stderr)
    results["live"] = live(sc, work, central, args.live_s)
    vm.http(central.url + "/internal/force_flush")
    # Disk as it settles: background merges compress the fresh parts further (VictoriaMetrics docs,
    # "Forced merge"); one forced merge of each month's partition stands for that.
    for month in sorted({time.strftime("%Y_%m", time.gmtime(t)) for t in (sc.start, sc.end)}):
        vm.http(f"{central.url}/internal/force_merge?partition_prefix={month}", timeout=3600)
    time.sleep(5)
    results["disk"] = vm.dir_bytes(work / "vm")


def measure_queries(
    results: dict[str, Any], sc: sim.Scenario, central: vm.Service, work: Path, args: argparse.Namespace
) -> None:
    print("replaying recording rules", file=sys.stderr)
    t0 = time.monotonic()
    vm.replay_rules([RULES], central, sc.start, sc.end, work / "vmalert.log")
    results["replay_s"] = time.monotonic() - t0
    vm.http(central.url + "/internal/force_flush")
    results["series"]["total"] = vm.series_count(central)
    print("queries", file=sys.stderr)
    timings = []
    start, end = max(sc.start, sc.end - 86400), sc.end
    for q in dashboard_queries():
        runs = [time_query(central, q, start, end, args.query_step) for _ in range(args.runs)]
        secs = [r[0] for r in runs]
        timings.append({**q, "p50": percentile(secs, 50), "p99": percentile(secs, 99), "series": runs[0][1]})
        print(f"  {timings[-1]['p50']:.3f} {timings[-1]['p99']:.3f} {q['where']}", file=sys.stderr)
    results["queries"] = timings
    results["rss_end"] = central.cpu_rss()[1]


def _mb(n: float) -> str:
    return f"{n / 1e6:.0f} MB"


def report(r: dict[str, Any]) -> str:
    b, live_r = r["backfill"], r["live"]
    per_month = r["disk"] / b["rows"] * 1000 * r["series"]["per_agent"] * (30 * 86400 / SCRAPE_INTERVAL_S)
    slow = [q for q in r["queries"] if q["p99"] >= 1.0]
    n = len(r["queries"])
    cpu = os.popen("grep -m1 'model name' /proc/cpuinfo").read().split(":")[-1].strip()
    lines = [
        "## Fleet",
        "",
        f"`bench/fleet/run.py --agents {r['agents']} --hours {r['hours']:g} --step {r['step']:g}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {cpu}, {os.cpu_count()} CPUs shared with "
        f"other work, Linux {platform.release()}, Python {platform.python_version()}, Debian's "
        "victoria-metrics (VictoriaMetrics, vmagent and vmalert 1.79.5), all on 127.0.0.1.",
        "",
        f"Each simulated agent is a real prometheus_client registry holding the agent's own collector "
        f"(agent/exporter/collector.py) over a synthetic state: 8 targets in the four /24s, ICMP and TCP "
        f"latency probes, every tag, the RTT and trace-duration histograms: **{r['series']['per_agent']} "
        "series per agent** (bounded: the label sets are fixed by the config, not by what is seen; "
        "496 of them are the 8 x 2 RTT histograms of 29 buckets + sum + count).",
        "",
        "| measurement | result |",
        "| --- | --- |",
        f"| backfill: {r['agents']} agents x {r['hours']:g} h, one sample every {r['step']:g} s, through "
        f"vmagent's import API and remote write | {b['rows']:,} samples in {b['wall']:.0f} s: "
        f"**{b['rows'] / b['wall']:,.0f} samples/s** |",
        f"| VictoriaMetrics during the backfill | {b['usage']['victoria-metrics'][0]:.0%} of a core, "
        f"peak RSS {_mb(b['usage']['victoria-metrics'][1])} |",
        f"| vmagent during the backfill | {b['usage']['vmagent'][0]:.0%} of a core, peak RSS "
        f"{_mb(b['usage']['vmagent'][1])} |",
        f"| vmalert replay of the recording rules over the span | {r['replay_s']:.0f} s |",
        f"| active series at the end of the span (nkprobe_*) | {r['series']['active']:,} |",
        f"| series in the database (with recording rules) | {r['series']['total']:,} |",
        f"| live: vmagent scraping {r['agents']} real registries every {SCRAPE_INTERVAL_S} s | "
        f"**{live_r['rate']:,.0f} samples/s** ingested ({live_r['scrapes']:.0f} scrapes, "
        f"{live_r['failed']:.0f} failed) |",
        f"| VictoriaMetrics, live | {live_r['usage']['victoria-metrics'][0]:.1%} of a core, peak RSS "
        f"{_mb(live_r['usage']['victoria-metrics'][1])} |",
        f"| vmagent, live ({r['agents']} scrape targets) | {live_r['usage']['vmagent'][0]:.1%} of a core, "
        f"peak RSS {_mb(live_r['usage']['vmagent'][1])} |",
        f"| disk after the run | {_mb(r['disk'])}: {r['disk'] / b['rows']:.2f} bytes per sample |",
        f"| **disk per 1,000 agents per month** at a {SCRAPE_INTERVAL_S} s scrape "
        f"| **{per_month / 1e9:.0f} GB** |",
        "",
        f"Every dashboard query, {n} in all, over 24 h (range queries at a 60 s step, instant ones at "
        f"the end), {r['runs']} runs each, VictoriaMetrics' cache off: "
        + (
            "**every one under 1 s at p99**."
            if not slow
            else f"{n - len(slow)} under 1 s at p99, {len(slow)} not (bold)."
        ),
        "",
        "| query | p50 | p99 | series |",
        "| --- | ---: | ---: | ---: |",
    ]
    for q in r["queries"]:
        mark = "**" if q["p99"] >= 1.0 else ""
        lines.append(f"| {q['where']} | {q['p50']:.3f} s | {mark}{q['p99']:.3f} s{mark} | {q['series']} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Replace (or append) the `## Fleet` section, leaving the others as they are."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    m = re.search(r"^## Fleet\n.*?(?=^## |\Z)", old, flags=re.S | re.M)
    new = old[: m.start()] + text + "\n" + old[m.end() :] if m else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


if __name__ == "__main__":
    raise SystemExit(main())
