"""The standard process_* metrics of a Prometheus exporter, read from procfs at scrape time: the names,
help texts, values and order of client_python's ProcessCollector (process_collector.py), which the tests
compare against it on a fake procfs.

Fields of /proc/PID/stat (proc(5)), counted after the ")" that ends the command name, which may hold
spaces: utime 11, stime 12 (clock ticks), starttime 19 (ticks since boot), vsize 20 (bytes), rss 21
(pages). The boot time is /proc/stat's `btime`. Without a readable /proc (not Linux), nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from agent.exporter.families import CounterFamily, GaugeFamily, MetricFamily


class ProcessCollector:
    def __init__(self, proc: str = "/proc", pid: str = "self") -> None:
        self._proc = proc
        self._pid = pid
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        self._pagesize = os.sysconf("SC_PAGESIZE")
        self._boot_time = self._read_boot_time()

    def _read_boot_time(self) -> float:
        try:
            with open(os.path.join(self._proc, "stat"), "rb") as stat:
                for line in stat:
                    if line.startswith(b"btime "):
                        return float(line.split()[1])
        except OSError:
            pass
        return 0.0

    def collect(self) -> Iterator[MetricFamily]:
        if not self._boot_time:
            return
        here = os.path.join(self._proc, self._pid)
        try:
            with open(os.path.join(here, "stat"), "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[-1].split()
        except OSError:
            fields = []
        if fields:
            yield GaugeFamily(
                "process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])
            )
            yield GaugeFamily(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                float(fields[21]) * self._pagesize,
            )
            yield GaugeFamily(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                float(fields[19]) / self._ticks + self._boot_time,
            )
            yield CounterFamily(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                float(fields[11]) / self._ticks + float(fields[12]) / self._ticks,
            )
        try:
            max_fds = None
            with open(os.path.join(here, "limits"), "rb") as limits:
                for line in limits:
                    if line.startswith(b"Max open file"):
                        max_fds = float(line.split()[3])
                        break
            open_fds = float(len(os.listdir(os.path.join(here, "fd"))))
        except OSError:
            return
        yield GaugeFamily("process_open_fds", "Number of open file descriptors.", open_fds)
        if max_fds is not None:
            yield GaugeFamily("process_max_fds", "Maximum number of open file descriptors.", max_fds)
