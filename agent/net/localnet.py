"""Our own side of the path: the default route, source address and link state, watched over netlink.

When the volunteer's router reboots, the Pi moves from Ethernet to Wi-Fi, or DHCP hands out a new
address, every path changes at its first hops, and latency probes alone may not notice (the far end
looks the same). So the agent listens to rtnetlink (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE;
rtnetlink(7)) in the namespace of its probe sockets, and when the route toward the targets changes
(outgoing interface, gateway, preferred source, or that interface's operational state) it asks the
scheduler for an immediate trace of every target.

What is exported: the *name* of the egress interface (nkprobe_egress_info{interface}), never the
volunteer's address or gateway: those identify a home. The addresses are compared in memory only.

`Egress` and `egress_changed` are pure, and so is agent.net.rtnetlink (the messages as bytes);
`LocalNetWatcher` is the thin I/O edge: two netlink sockets of its own (one subscribed to the groups
above, one for `route get` and `link get` requests), opened in the probe namespace (a socket keeps the
namespace it was created in; network_namespaces(7)). No pyroute2: Debian ships no release with the
asyncio API the watch once used, and importing it costs a Pi Zero 23 MiB. A watch that cannot start or
dies is an error in the log and in nkprobe_errors_total{kind="localnet"} (on_error), never silently off.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from agent.net.netns import call_in_netns
from agent.net.rtnetlink import (
    NLMSG_ERROR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    WATCH_GROUPS,
    Link,
    Message,
    NetlinkError,
    Route,
    error_of,
    link_get_request,
    messages,
    parse_link,
    parse_route,
    route_get_request,
)

log = logging.getLogger("nkprobe.localnet")

DEBOUNCE_S = 0.5  # one change (e.g. DHCP renew) is a burst of netlink messages: act once, after it
QUERY_TIMEOUT_S = 5.0  # the kernel answers a route or link request at once; this only bounds a bug
RECV_BYTES = 65536  # larger than any one datagram the kernel sends us (netlink(7): up to a page or 32 KiB)


@dataclass(frozen=True, slots=True)
class Egress:
    """The route toward the targets as the kernel would use it now (in memory only, see above)."""

    interface: str  # exported
    oif: int | None
    gateway: str | None
    source: str | None
    up: bool

    @staticmethod
    def none() -> Egress:
        return Egress("", None, None, None, False)


def egress_changed(old: Egress | None, new: Egress) -> bool:
    """True if a path from us could have changed (the first look is not a change).

    >>> a = Egress("eth0", 2, "192.0.2.1", "192.0.2.9", True)
    >>> egress_changed(None, a), egress_changed(a, a)
    (False, False)
    >>> egress_changed(a, Egress("wlan0", 3, "192.0.2.1", "192.0.2.9", True))
    True
    """
    return old is not None and old != new


def egress_from(route: Route | None, link: Link | None) -> Egress:
    """An Egress from the kernel's `route get` answer and the link it names (None: no route).

    >>> egress_from(Route(3, "192.0.2.1", "192.0.2.9"), Link(3, "wlan0", "UP"))
    Egress(interface='wlan0', oif=3, gateway='192.0.2.1', source='192.0.2.9', up=True)
    """
    if route is None:
        return Egress.none()
    name = link.name if link is not None else ""
    # IFLA_OPERSTATE "UP", or "UNKNOWN" for links without carrier reporting (loopback, some tunnels).
    up = link is not None and link.operstate in ("UP", "UNKNOWN")
    return Egress(name, route.oif, route.gateway, route.prefsrc, up)


def _netlink_socket(groups: int = 0) -> socket.socket:
    """A non-blocking NETLINK_ROUTE socket, subscribed to `groups` (netlink(7): nl_groups at bind)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, groups))  # port id 0: the kernel assigns one
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class _Query:
    """Requests to the kernel over one netlink socket: `route get` and `link get`, answered in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    async def ask(self, request: Callable[[int], bytes]) -> Message:
        """The answer to request(seq); NetlinkError if the kernel refused it, TimeoutError if silent."""
        loop = asyncio.get_running_loop()
        self.seq += 1
        seq = self.seq
        await loop.sock_sendall(self.sock, request(seq))
        async with asyncio.timeout(QUERY_TIMEOUT_S):
            while True:
                data = await loop.sock_recv(self.sock, RECV_BYTES)
                for message in messages(data):
                    if message.seq != seq:
                        continue  # a late answer to an earlier request that timed out
                    if message.type == NLMSG_ERROR:
                        err = error_of(message)
                        raise NetlinkError(err, os.strerror(err))
                    return message


class LocalNetWatcher:
    """Watches netlink in `netns`; calls `on_change()` after a change of the egress toward `toward`."""

    def __init__(
        self,
        toward: str,
        *,
        netns: str | None,
        on_change: Callable[[], None],
        on_egress: Callable[[str], None],
        on_error: Callable[[], None] = lambda: None,
        on_look: Callable[[Egress], None] = lambda _egress: None,
    ) -> None:
        self.toward = toward  # a target address: only the route lookup uses it, no packet is sent
        self.netns = netns
        self.on_change = on_change
        self.on_egress = on_egress
        self.on_error = on_error
        self.on_look = on_look  # every look, changed or not (agent.vantage judges route and link)
        self.egress: Egress | None = None
        self.changes = 0

    async def lookup(self, query: _Query) -> Egress:
        """The route toward the targets now (a route lookup: no packet is sent)."""
        try:
            answer = await query.ask(lambda seq: route_get_request(self.toward, seq))
        except NetlinkError:  # ENETUNREACH and friends: no route at all is a state, not a fault
            return Egress.none()
        if answer.type != RTM_NEWROUTE:
            return Egress.none()
        route = parse_route(answer.body)
        link = None
        if route.oif is not None:
            oif = route.oif
            try:
                reply = await query.ask(lambda seq: link_get_request(oif, seq))
            except NetlinkError:  # ENODEV: the link went away between the two answers
                reply = None
            if reply is not None and reply.type == RTM_NEWLINK:
                link = parse_link(reply.body)
        return egress_from(route, link)

    def update(self, new: Egress) -> bool:
        """Take a new look at the egress; True (and on_change called) if the path from us may differ."""
        changed = egress_changed(self.egress, new)
        self.on_look(new)
        if changed:
            self.changes += 1
            log.info(
                "local network changed (egress %s -> %s): tracing every target", self._name(), new.interface
            )
            self.on_change()
        if self.egress is None or new.interface != self.egress.interface:
            self.on_egress(new.interface)
        self.egress = new
        return changed

    def _name(self) -> str:
        return self.egress.interface if self.egress else "?"

    async def run(self) -> None:
        """Until cancelled. A netlink failure is counted (on_error) and logged as an error."""
        sockets: list[socket.socket] = []
        try:
            sockets.append(call_in_netns(self.netns, _netlink_socket))
            sockets.append(call_in_netns(self.netns, lambda: _netlink_socket(WATCH_GROUPS)))
            query, events = _Query(sockets[0]), sockets[1]
            self.update(await self.lookup(query))
            loop = asyncio.get_running_loop()
            while True:
                await self._next_event(loop, events)
                await asyncio.sleep(DEBOUNCE_S)
                _drain(events)  # the rest of the burst: what changed is looked up afresh below
                self.update(await self.lookup(query))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error()
            log.error(
                "cannot watch the local network in %s (%s); re-traces on local changes are off",
                self.netns or "this namespace",
                exc or type(exc).__name__,
            )
        finally:
            for sock in sockets:
                sock.close()

    @staticmethod
    async def _next_event(loop: asyncio.AbstractEventLoop, events: socket.socket) -> None:
        try:
            await loop.sock_recv(events, RECV_BYTES)
        except OSError as exc:
            # netlink(7): ENOBUFS when the kernel dropped messages because our buffer was full (a big
            # burst). Messages were lost, not the subscription: treat it as "something changed".
            if exc.errno != errno.ENOBUFS:
                raise


def _drain(sock: socket.socket) -> None:
    """Read and drop whatever is queued on a non-blocking socket."""
    while True:
        try:
            sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
