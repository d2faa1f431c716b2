"""Watch the wire: timestamped IPv4 packets at an interface (AF_PACKET), for the lab tests and the bench.

Not used by the agent itself. It answers "how many packets per second really left?" and "what RTT does
the interface see?" independently of the code under test: the kernel stamps each frame as it passes
the device (outgoing frames when they are handed to the driver, dev_queue_xmit_nit; incoming ones on
receive), so the numbers do not depend on our own clocks or event loop.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass

from agent.net.netns import call_in_netns
from agent.net.sockets import CMSG_SPACE, enable_timestamps, parse_timestamp

ETH_P_ALL = 0x0003  # outgoing frames reach only ETH_P_ALL taps (dev_queue_xmit_nit walks ptype_all)
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4  # <linux/if_packet.h>: sll_pkttype of a frame this host sent


@dataclass(frozen=True, slots=True)
class Frame:
    time_ns: int  # kernel timestamp, CLOCK_REALTIME
    outgoing: bool
    data: bytes  # the IPv4 packet, from its header

    @property
    def src(self) -> str:
        return socket.inet_ntoa(self.data[12:16])

    @property
    def dst(self) -> str:
        return socket.inet_ntoa(self.data[16:20])


class Capture:
    """Collect IPv4 frames on `ifname` (inside namespace `netns`) on a background thread.

    Use as a context manager; `frames` holds what was seen. Bounded by `limit` frames.
    """

    def __init__(self, ifname: str, netns: str | None = None, limit: int = 200_000) -> None:
        def make() -> socket.socket:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            s.bind((ifname, ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            enable_timestamps(s)
            return s

        self._sock = call_in_netns(netns, make)
        self._limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture-{ifname}", daemon=True)
        self.frames: list[Frame] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            data, anc, _flags, addr = self._sock.recvmsg(65535, CMSG_SPACE)
            stamp = parse_timestamp(anc)
            if addr[1] == ETH_P_IP and stamp is not None and len(self.frames) < self._limit:
                self.frames.append(Frame(stamp, addr[2] == PACKET_OUTGOING, data))

    def __enter__(self) -> Capture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def max_in_window(times_ns: list[int], window_ns: int = 1_000_000_000) -> int:
    """The most events inside any half-open window [t, t + window) (t ranging over the events).

    >>> max_in_window([0, 10, 999_999_999, 1_000_000_000, 1_500_000_000])
    3
    >>> max_in_window([])
    0
    """
    times = sorted(times_ns)
    best, j = 0, 0
    for i, start in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < start + window_ns:
            j += 1
        best = max(best, j - i)
    return best
