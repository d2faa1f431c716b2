"""Debian's VictoriaMetrics single node, vmagent and vmalert on loopback, for the fleet benchmark and its
test: start, wait until healthy, push, query, read their own metrics, stop.

Everything listens on 127.0.0.1 with a free port and keeps its data in a directory we are given; every
HTTP request goes to 127.0.0.1 only (the hard network rule), and every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    pass


def tool(name: str) -> str | None:
    """Path of a VictoriaMetrics binary (Debian package victoria-metrics), or None."""
    return shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def http(url: str, data: bytes | None = None, timeout: float = 60.0) -> bytes:
    host = urllib.parse.urlsplit(url).hostname
    if host != LOOPBACK:  # the hard network rule, checked where requests leave
        raise StackError(f"refusing a request to {host}: only {LOOPBACK} is allowed")
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


class Service:
    """One process of the stack with its HTTP port."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = log

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"{self.name} exited {self.proc.returncode}: see {self.log_path}")
            try:
                if http(self.url + "/health", timeout=2).strip() == b"OK":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(f"{self.name} not healthy after {timeout:.0f} s: see {self.log_path}")

    def metrics(self) -> dict[str, float]:
        """Its own /metrics, as {'name{labels}': value}."""
        out: dict[str, float] = {}
        for line in http(self.url + "/metrics").decode().splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    continue
        return out

    def cpu_rss(self) -> tuple[float, int]:
        """(CPU seconds, resident bytes) of the process, from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return cpu, rss

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def start_victoria_metrics(data: Path, *, retention: str = "1y") -> Service:
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        tool("victoria-metrics") or "victoria-metrics",
        f"-httpListenAddr={LOOPBACK}:{port}",
        f"-storageDataPath={data}",
        f"-retentionPeriod={retention}",
        # Timings must measure the query, not VictoriaMetrics' rollup cache of the previous run.
        "-search.disableCache",
        # A fleet query like sum by (le) (rate(nkprobe_rtt_seconds_bucket[..])) reads every bucket
        # series of every agent: ~500 per agent, 500,000 at 1,000 agents (default limit 300,000).
        "-search.maxUniqueTimeseries=5000000",
        # Answers up to now, not now-30s: the test looks at samples it has just written.
        "-search.latencyOffset=0s",
    ]
    svc = Service("victoria-metrics", argv, port, data.parent / "victoria-metrics.log")
    svc.wait_healthy()
    return svc


def start_vmagent(work: Path, remote_write: str, scrape_config: Path | None = None) -> Service:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [
        tool("vmagent") or "vmagent",
        f"-httpListenAddr={LOOPBACK}:{port}",
        f"-remoteWrite.url={remote_write}",
        f"-remoteWrite.tmpDataPath={work / 'buffer'}",
    ]
    if scrape_config is not None:
        argv.append(f"-promscrape.config={scrape_config}")
    svc = Service("vmagent", argv, port, work / "vmagent.log")
    svc.wait_healthy()
    return svc


def replay_rules(rules: Iterable[Path], vm: Service, start: float, end: float, log: Path) -> None:
    """vmalert's replay mode: evaluates the recording rules over [start, end] as the central ruler
    would have, writing the results back into VictoriaMetrics (docs: vmalert "Rules backfilling")."""
    argv = [
        tool("vmalert") or "vmalert",
        *(f"-rule={r}" for r in rules),
        f"-datasource.url={vm.url}",
        f"-remoteWrite.url={vm.url}",
        f"-replay.timeFrom={_rfc3339(start)}",
        f"-replay.timeTo={_rfc3339(end)}",
        "-replay.disableProgressBar",
        f"-httpListenAddr={LOOPBACK}:{free_port()}",
    ]
    with log.open("wb") as out:
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800)
    if proc.returncode != 0:
        raise StackError(f"vmalert replay exited {proc.returncode}: see {log}")


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def push(vmagent: Service, body: bytes) -> None:
    """Samples in the Prometheus text format with timestamps, into vmagent, which remote-writes them."""
    http(vmagent.url + "/api/v1/import/prometheus", body)


def rows_inserted(vm: Service) -> float:
    return sum(v for k, v in vm.metrics().items() if k.startswith("vm_rows_inserted_total"))


def wait_rows(vm: Service, expected: float, timeout: float = 600.0) -> None:
    """Until VictoriaMetrics has taken `expected` rows (vmagent sends in the background), then makes
    them searchable at once (/internal/force_flush)."""
    deadline = time.monotonic() + timeout
    while rows_inserted(vm) < expected:
        if time.monotonic() > deadline:
            raise StackError(f"only {rows_inserted(vm):.0f} of {expected:.0f} rows arrived")
        time.sleep(0.2)
    http(vm.url + "/internal/force_flush")


def query(vm: Service, expr: str, t: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode({"query": expr, "time": f"{t:.3f}", "nocache": "1"})
    return _result(http(f"{vm.url}/api/v1/query?{params}"))


def query_range(vm: Service, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode(
        {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}", "nocache": "1"}
    )
    return _result(http(f"{vm.url}/api/v1/query_range?{params}"))


def _result(body: bytes) -> list[dict[str, Any]]:
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise StackError(f"query failed: {doc.get('error')}")
    result: list[dict[str, Any]] = doc["data"]["result"]
    return result


def series_count(vm: Service) -> int:
    """Series in the database (/api/v1/status/tsdb, totalSeries)."""
    doc = json.loads(http(vm.url + "/api/v1/status/tsdb?topN=1"))
    return int(doc["data"].get("totalSeries", 0))


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
