"""The userspace delay link: one helper process forwards frames between veth pairs after a delay.

Used where the kernel has no netem qdisc. For every delay link the wire namespace holds exactly two veth
ends, `<link>-a` and `<link>-b`; their peers sit in the two router namespaces the link joins. This process
opens one AF_PACKET socket per end and copies each frame received on one end to the other end once it is
due. One process and one event loop serve every link of a lab, so an idle lab costs no CPU.

Timing: frames wait in a heap ordered by due time (monotonic clock); `select()` sleeps until the next
frame is due or a socket is readable. select() takes a microsecond timeout (poll/epoll in Python 3.11 round
up to whole milliseconds), and the timer slack of this process is set to 1 us (prctl PR_SET_TIMERSLACK) so
the kernel does not batch our wake-ups by its default 50 us.

Run: python -m agent.lab.wire SPEC.json   (SPEC written by `nkprobe lab up`; counters go to a JSON file
named in it, rewritten at most once a second while frames flow, and on exit).
"""

from __future__ import annotations

import contextlib
import ctypes
import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.lab import nsutil

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23  # Linux 4.20: do not hand us our own transmitted frames back
PR_SET_TIMERSLACK = 29
SO_TIMESTAMPNS = 35  # also the SCM_ type of its control message
_ANC_SIZE = socket.CMSG_SPACE(16)
MAX_FRAME = 65536


@dataclass
class Direction:
    """One direction of one link with its counters."""

    link: str
    name: str  # "a>b" or "b>a"
    delay_s: float
    jitter_s: float
    loss: float  # probability 0..1
    forwarded: int = 0
    dropped: int = 0  # by the configured loss
    errors: int = 0  # could not send (e.g. frame larger than the MTU)
    last_due: float = 0.0


# A queued frame: (due, sequence number, index of the output end, frame, its direction). Plain tuples keep
# the heap cheap: the sequence number breaks ties so frames and directions are never compared.
Pending = tuple[float, int, int, bytes, Direction]


class DelayLine:
    """Sans-I/O core: frames in with a time, frames out when due. Never reorders within a direction.

    >>> line = DelayLine(rng=random.Random(1))
    >>> d = Direction("x", "a>b", delay_s=0.005, jitter_s=0.0, loss=0.0)
    >>> line.push(b"frame", out=1, direction=d, now=10.0)
    True
    >>> line.next_due(), line.pop_due(10.004), [p[3] for p in line.pop_due(10.005)]
    (10.005, [], [b'frame'])
    """

    def __init__(self, rng: random.Random | None = None) -> None:
        self._heap: list[Pending] = []
        self._seq = 0
        self._rng = rng or random.Random()

    def push(self, frame: bytes, out: int, direction: Direction, now: float) -> bool:
        """Queue a frame; False if the configured loss dropped it."""
        if direction.loss > 0 and self._rng.random() < direction.loss:
            direction.dropped += 1
            return False
        due = now + direction.delay_s
        if direction.jitter_s > 0:
            due += self._rng.uniform(-direction.jitter_s, direction.jitter_s)
        # netem reorders frames when jitter lets a later one overtake; a wire does not.
        due = max(due, direction.last_due, now)
        direction.last_due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, out, frame, direction))
        return True

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Pending]:
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap))
        return out

    def __len__(self) -> int:
        return len(self._heap)


def _open_end(ifname: str) -> socket.socket:
    # Protocol 0 at creation receives nothing until bind() names the interface: no frames of other
    # interfaces slip in between.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    sock.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind((ifname, ETH_P_ALL))
    sock.setblocking(False)
    return sock


def counters(directions: list[Direction], queued: int, lateness: Lateness) -> dict[str, Any]:
    links: dict[str, dict[str, Any]] = {}
    for d in directions:
        entry = links.setdefault(d.link, {"delay_ms": d.delay_s * 1000})
        entry[d.name] = {"forwarded": d.forwarded, "dropped": d.dropped, "errors": d.errors}
    return {
        "pid": os.getpid(),
        "time": time.time(),
        "queued": queued,
        "wake_correction_us": round(lateness.estimate_s * 1e6, 1),
        "dumps_on_sigusr1": True,  # lets `lab status` know it may ask (SIGUSR1 would kill an older helper)
        "links": links,
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def serve(spec: dict[str, Any], clock: Callable[[], float] = time.monotonic) -> None:
    counters_path = Path(spec["counters"])
    ends: list[socket.socket] = []
    routes: list[tuple[int, Direction]] = []  # per end: (output end, direction)
    directions: list[Direction] = []
    for lk in spec["links"]:
        a, b = _open_end(lk["a_if"]), _open_end(lk["b_if"])
        ia, ib = len(ends), len(ends) + 1
        ends += [a, b]
        params = (lk["delay_ms"] / 1000, lk["jitter_ms"] / 1000, lk["loss_pct"] / 100)
        ab, ba = Direction(lk["name"], "a>b", *params), Direction(lk["name"], "b>a", *params)
        directions += [ab, ba]
        routes += [(ib, ab), (ia, ba)]
    line = DelayLine()
    fds = {s.fileno(): i for i, s in enumerate(ends)}
    lateness = Lateness()
    _write_json(counters_path, counters(directions, 0, lateness))  # also tells `lab up` we are ready

    def dump_now(_signum: int, _frame: object) -> None:
        # `lab status` asks for fresh counters (SIGUSR1); runs between two bytecodes of the loop.
        _write_json(counters_path, counters(directions, len(line), lateness))

    signal.signal(signal.SIGUSR1, dump_now)
    try:
        _loop(_Wire(ends, routes, fds, line, directions, counters_path, lateness), clock)
    finally:
        _write_json(counters_path, counters(directions, len(line), lateness))


class Lateness:
    """How late select() wakes us for a due frame, as a moving average, so we can ask to wake that much
    earlier. A sleeping VM CPU often needs 50-150 us to wake; uncorrected, every traversal of a delay
    link would add that to the configured delay."""

    def __init__(self, cap_s: float = 0.0005, start_s: float = 0.00005) -> None:
        self.estimate_s = start_s  # a typical wake-up latency until we have measured ours
        self._cap = cap_s

    def observe(self, late_s: float) -> None:
        """`late_s`: send time minus due time (negative when we sent early).

        >>> lat = Lateness()
        >>> for _ in range(100): lat.observe(0.0001 - lat.estimate_s)  # woke early by the estimate
        >>> round(lat.estimate_s * 1e6)
        100
        """
        # Feed back the residual error: the estimate converges to the wake-up latency itself.
        corrected = max(-self._cap, min(self._cap, late_s + self.estimate_s))
        self.estimate_s += 0.1 * (corrected - self.estimate_s)
        self.estimate_s = max(0.0, min(self._cap, self.estimate_s))


def _recv_stamped(sock: socket.socket, realtime_to_mono: float, now: float) -> tuple[bytes, float]:
    """A frame and when the kernel received it (SO_TIMESTAMPNS, CLOCK_REALTIME) on the monotonic clock,
    so time spent before this process woke up counts as part of the delay, not in addition to it."""
    frame, ancdata, _flags, _addr = sock.recvmsg(MAX_FRAME, _ANC_SIZE)
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack_from("qq", data)
            stamp = sec + nsec * 1e-9 - realtime_to_mono
            if now - 1.0 < stamp <= now:  # ignore a clock step
                return frame, stamp
    return frame, now


@dataclass
class _Wire:
    ends: list[socket.socket]
    routes: list[tuple[int, Direction]]  # per end: (output end, direction)
    fds: dict[int, int]  # file descriptor -> end
    line: DelayLine
    directions: list[Direction]
    counters_path: Path
    lateness: Lateness


def _loop(wire: _Wire, clock: Callable[[], float]) -> None:
    ends, routes, fds, line, lateness = wire.ends, wire.routes, wire.fds, wire.line, wire.lateness
    readable = list(fds)
    dirty = False
    last_write = clock()
    while True:
        now = clock()
        due = line.next_due()
        timeout = 1.0 if due is None else max(0.0, due - lateness.estimate_s - now)
        ready, _, _ = select.select(readable, [], [], timeout)
        if ready:
            now = clock()
            realtime_to_mono = time.time() - now
            for fd in ready:
                i = fds[fd]
                out, direction = routes[i]
                # One frame per readable end and turn: draining until EAGAIN would cost a failed
                # recvmsg() and a Python exception per wake-up, and at these rates a wake-up brings one.
                instant = direction.delay_s == 0 and direction.jitter_s == 0 and direction.loss == 0
                try:
                    if instant:  # a 0 ms link: straight through, no timestamp, no heap
                        frame, stamp = ends[i].recv(MAX_FRAME), now
                    else:
                        frame, stamp = _recv_stamped(ends[i], realtime_to_mono, now)
                except BlockingIOError:
                    continue
                except OSError:
                    # The veth end is gone (its router namespace was deleted under us): stop watching
                    # it, or select() would report it readable forever and this loop would spin.
                    direction.errors += 1
                    readable.remove(fd)
                    continue
                if instant:
                    try:
                        ends[out].send(frame)
                        direction.forwarded += 1
                    except OSError:  # EMSGSIZE, ENETDOWN, ENOBUFS: the frame is lost, as on a wire
                        direction.errors += 1
                    dirty = True
                    continue
                line.push(frame, out, direction, stamp)
        now = clock()
        for frame_due, _seq, out_end, frame, out_direction in line.pop_due(now + lateness.estimate_s):
            try:
                ends[out_end].send(frame)
                out_direction.forwarded += 1
            except OSError:
                out_direction.errors += 1
            if frame_due > now - 0.001:  # a frame we slept for, not one from a backlog
                lateness.observe(clock() - frame_due)
            dirty = True
        # Counters for `lab status`: at most once a second under load, soon after the wire falls idle.
        if dirty and (now - last_write >= 1.0 or (not line and now - last_write >= 0.1)):
            _write_json(wire.counters_path, counters(wire.directions, len(line), lateness))
            dirty, last_write = False, now


def _set_timerslack_ns(ns: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0)


def _raise_priority() -> None:
    """Wake on time on a busy machine: the lowest real-time priority (SCHED_FIFO 1) when allowed, which
    preempts ordinary processes but nothing of the kernel's; else nice -10. The loop sleeps between frames,
    and the kernel's RT throttling (sched_rt_runtime_us) bounds the damage of a bug."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        with contextlib.suppress(OSError):
            os.nice(-10)


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    nsutil.enter(spec["namespace"])
    _set_timerslack_ns(1000)
    _raise_priority()

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    serve(spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
