"""Our own side of the path: the default route, source address and link state, watched over netlink.

When the volunteer's router reboots, the Pi moves from Ethernet to Wi-Fi, or DHCP hands out a new
address, every path changes at its first hops, and latency probes alone may not notice (the far end
looks the same). So the agent listens to rtnetlink (RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE;
rtnetlink(7)) in the namespace of its probe sockets, and when the route toward the targets changes
(outgoing interface, gateway, preferred source, or that interface's operational state) it asks the
scheduler for an immediate trace of every target.

What is exported: the *name* of the egress interface (nkprobe_egress_info{interface}), never the
volunteer's address or gateway: those identify a home. The addresses are compared in memory only.

`Egress` and `egress_changed` are pure; `LocalNetWatcher` is the thin I/O edge (pyroute2), which opens
its netlink sockets in the probe namespace (a socket keeps the namespace it was created in;
network_namespaces(7)).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("nkprobe.localnet")

DEBOUNCE_S = 0.5  # one change (e.g. DHCP renew) is a burst of netlink messages: act once, after it


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


def egress_from(route: Any, link: Any) -> Egress:
    """An Egress from pyroute2 messages of `route get` and the link it names (None: no route)."""
    if route is None:
        return Egress.none()
    oif = route.get("RTA_OIF")
    name = link.get("IFLA_IFNAME") if link is not None else None
    operstate = link.get("IFLA_OPERSTATE") if link is not None else None
    # IFLA_OPERSTATE "UP", or "UNKNOWN" for links without carrier reporting (loopback, some tunnels).
    up = operstate in ("UP", "UNKNOWN")
    return Egress(str(name or ""), oif, route.get("RTA_GATEWAY"), route.get("RTA_PREFSRC"), up)


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
    ) -> None:
        self.toward = toward  # a target address: only the route lookup uses it, no packet is sent
        self.netns = netns
        self.on_change = on_change
        self.on_egress = on_egress
        self.on_error = on_error
        self.egress: Egress | None = None
        self.changes = 0

    def _open(self) -> Any:
        # pyroute2 0.9's asyncio socket (its sync IPRoute runs an event loop of its own, which cannot run
        # inside ours). We create the netlink socket ourselves, on a thread that joined the namespace
        # (agent.net.netns): pyroute2's own `netns=` forks, and a forked copy of this process would run
        # our cleanup and shut down the listening socket it shares with us.
        from pyroute2 import AsyncIPRoute

        from agent.net.netns import call_in_netns

        def netlink() -> socket.socket:
            return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)

        return AsyncIPRoute(use_socket=call_in_netns(self.netns, netlink))

    async def lookup(self, ipr: Any) -> Egress:
        """The route toward the targets now (a route lookup: no packet is sent)."""
        try:
            routes = list(await ipr.route("get", dst=self.toward))
        except Exception:  # ENETUNREACH and friends: no route at all is a state, not a fault
            return Egress.none()
        route = routes[0] if routes else None
        link = None
        if route is not None and route.get("RTA_OIF") is not None:
            links = list(await ipr.link("get", index=route.get("RTA_OIF")))
            link = links[0] if links else None
        return egress_from(route, link)

    def update(self, new: Egress) -> bool:
        """Take a new look at the egress; True (and on_change called) if the path from us may differ."""
        changed = egress_changed(self.egress, new)
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
        """Until cancelled. A netlink failure is counted and logged; the agent goes on without the watcher."""
        from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_LINK

        try:
            async with self._open() as query, self._open() as events:
                await events.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE)
                self.update(await self.lookup(query))
                while True:
                    async for _message in events.get():
                        pass  # what changed is looked up afresh below, once the burst is over
                    await asyncio.sleep(DEBOUNCE_S)
                    self.update(await self.lookup(query))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.on_error()
            log.warning("cannot watch the local network (%s); re-traces on local changes are off", exc)
