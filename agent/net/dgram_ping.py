"""ICMP echo without CAP_NET_RAW, for `nkprobe ping --protocol icmp` only: icmplib's unprivileged sockets.

Linux lets a process whose group is inside `net.ipv4.ping_group_range` open
socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP): the kernel writes the ICMP identifier itself and hands back
only the echo replies to it (icmp(7), "ping sockets"). The sysctl is per network namespace; the
kernel's default, "1 0", lets nobody; upstream systemd's sysctl.d/50-default.conf widens it to every
group, and distributions differ. icmplib (its `privileged=False`) drives such a
socket. The agent never uses this: its raw sockets give kernel receive timestamps and the reply's TTL,
which a ping socket does not (icmplib reads it with recvfrom, so no control message reaches us); here the
RTT is taken in user space around the send and the receive, and the reply TTL is unknown (None).

Probes go one at a time, each on its schedule (start + seq * interval, never faster than max_pps), and
wait up to `timeout` for their answer. The caller has checked the target against the destination prefixes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from agent.errors import PrivilegeError
from agent.model import PingResult, Protocol
from agent.net.sockets import PRIVILEGE_HINT


def ping_group_allowed(path: str = "/proc/sys/net/ipv4/ping_group_range") -> bool | None:
    """Whether one of our groups is inside ping_group_range (None: the file cannot be read).

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".range") as f:
    ...     _ = f.write("1\\t0\\n"); f.flush()
    ...     ping_group_allowed(f.name)
    False
    """
    try:
        with open(path, encoding="ascii") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return None
    return any(low <= gid <= high for gid in {os.getegid(), *os.getgroups()})


class UnprivilegedPinger:
    """One icmplib ICMPv4Socket(privileged=False); PrivilegeError if the kernel refuses it."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        import icmplib  # only here: `nkprobe ping` without CAP_NET_RAW is its one user

        self._icmplib = icmplib
        self._clock = clock
        try:
            self._sock = icmplib.ICMPv4Socket(privileged=False)
        except icmplib.SocketPermissionError:
            allowed = ping_group_allowed()
            why = "net.ipv4.ping_group_range excludes your groups" if allowed is False else "refused"
            gid = os.getegid()
            raise PrivilegeError(
                f"cannot open a raw socket (no CAP_NET_RAW) nor an ICMP ping socket ({why}); "
                f"{PRIVILEGE_HINT}; or, for ICMP pings only, let your group open ping sockets: "
                f"sudo sysctl -w net.ipv4.ping_group_range='{gid} {gid}'"
            ) from None
        self._identifier = os.getpid() & 0xFFFF  # the kernel replaces it on a ping socket; icmplib wants one

    def close(self) -> None:
        self._sock.close()

    def echo(self, target: str, sequence: int, timeout: float) -> PingResult:
        """One echo request and its reply (or a loss after `timeout` seconds)."""
        request = self._icmplib.ICMPRequest(target, id=self._identifier, sequence=sequence & 0xFFFF)
        sent_at = time.time()
        start = self._clock()
        try:
            self._sock.send(request)
            reply = self._sock.receive(request, timeout)
        except self._icmplib.TimeoutExceeded:
            return PingResult(target, Protocol.ICMP, sent_at, None)
        except self._icmplib.ICMPSocketError:
            # A send the kernel refuses (no route, a local firewall) is a lost probe, as in the engine.
            return PingResult(target, Protocol.ICMP, sent_at, None)
        rtt = self._clock() - start
        if reply.type != 0:  # not an echo reply: an ICMP error about our request
            return PingResult(target, Protocol.ICMP, sent_at, None, extra={"from": str(reply.source)})
        return PingResult(target, Protocol.ICMP, sent_at, rtt)

    def run(
        self,
        target: str,
        *,
        count: int,
        interval: float,
        timeout: float,
        max_pps: float,
        on_result: Callable[[PingResult], None] = lambda _r: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[PingResult]:
        """`count` probes on their schedule; each result also goes to `on_result` as it comes."""
        spacing = max(interval, 1.0 / max_pps if max_pps > 0 else 0.0)
        start = self._clock()
        results: list[PingResult] = []
        for seq in range(count):
            sleep(max(0.0, start + seq * spacing - self._clock()))
            results.append(self.echo(target, seq, timeout))
            on_result(results[-1])
        return results
