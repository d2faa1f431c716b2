"""The lab in the kernel: what topology.py describes, set up in one namespace at a time.

Sysctls through /proc/sys (nsutil); veth links, addresses, static neighbours, routes, policy rules and
netem qdiscs through rtnetlink (pyroute2); the NAT through nft(8). build.py decides when (up, flip) and
keeps the lab's state files and helper processes; this module only talks to the kernel.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import LabError
from agent.lab import nsutil, topology
from agent.lab.scenario import Scenario
from agent.lab.topology import MULTIPATH_ROUTERS, ROUTERS, WIRE, Options

BACKEND_ENV = "NKPROBE_LAB_DELAY"  # auto (default), wire or netem
MULTIPATH_SEED = 28267  # any fixed value, the same on the ISP and the border


@contextlib.contextmanager
def netlink(ns: str) -> Iterator[Any]:
    """An rtnetlink socket inside namespace `ns`.

    The socket is opened while this thread is in `ns` and keeps talking to it afterwards. (pyroute2's own
    IPRoute(netns=...) forks a child to open it; a forked Python child runs our signal handlers and
    `finally` blocks too, which once tore a demo lab down from inside a netlink call.)
    """
    from pyroute2 import IPRoute

    with nsutil.inside(ns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _netem_available(ns: str) -> bool:
    """Try a netem qdisc on the namespace's loopback: the only sure test (the module may be built in)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with netlink(ns) as ipr:
        try:
            ipr.tc("add", "netem", index=1, handle="1:0", delay=1000)
        except (NetlinkError, OSError):  # ENOENT "Specified qdisc kind is unknown" on this project's CI
            return False
        with contextlib.suppress(NetlinkError, OSError):
            ipr.tc("del", index=1, handle="1:0")
        return True


def delay_backend(wire_ns: str) -> str:
    """How the lab makes delay: "netem" where the kernel has it, else "wire" (BACKEND_ENV may force one)."""
    wanted = os.environ.get(BACKEND_ENV, "auto")
    if wanted not in ("auto", "wire", "netem"):
        raise LabError(f"{BACKEND_ENV}={wanted!r}: use auto, wire or netem")
    if wanted == "wire":
        return "wire"
    available = _netem_available(wire_ns)
    if wanted == "netem" and not available:
        raise LabError(f"{BACKEND_ENV}=netem but this kernel has no netem qdisc; unset it to use the wire")
    return "netem" if available else "wire"


def set_sysctls(role: str, opts: Options) -> None:
    """Run inside the namespace, before any interface exists (new interfaces copy conf/default)."""
    # No IPv6 on lab links: no router solicitations or DAD frames through the delay links.
    nsutil.sysctl("net/ipv6/conf/all/disable_ipv6", 1, missing_ok=True)
    nsutil.sysctl("net/ipv6/conf/default/disable_ipv6", 1, missing_ok=True)
    if opts.rate_limit and role != WIRE:
        # Like real routers and hosts: the kernel's per-peer token bucket (icmp_ratelimit ms a token,
        # burst 6) and its per-namespace cap (icmp_msgs_per_sec, burst icmp_msgs_burst), on the types
        # in the default ratemask (time exceeded, unreachables: never echo replies). Both are per
        # namespace (net->ipv4.sysctl_icmp_*), so each lab router limits on its own.
        nsutil.sysctl("net/ipv4/icmp_ratelimit", opts.icmp_ratelimit_ms)
        nsutil.sysctl("net/ipv4/icmp_ratemask", topology.KERNEL_ICMP_RATEMASK)
        nsutil.sysctl("net/ipv4/icmp_msgs_per_sec", opts.icmp_msgs_per_sec)
        nsutil.sysctl("net/ipv4/icmp_msgs_burst", topology.KERNEL_ICMP_MSGS_BURST)
    else:
        # Traceroute answers must never be rate limited (icmp_ratelimit/ratemask are per namespace, and
        # the default 1 per second per peer after a burst of 6 shows as '*' in repeated test traces).
        nsutil.sysctl("net/ipv4/icmp_ratelimit", 0)
        nsutil.sysctl("net/ipv4/icmp_ratemask", 0)
    if role in ROUTERS:
        nsutil.sysctl("net/ipv4/ip_forward", 1)
        nsutil.sysctl("net/ipv4/conf/all/rp_filter", 0)
        nsutil.sysctl("net/ipv4/conf/default/rp_filter", 0)
        # Answer a probe from the interface it came in on (RFC 1812 4.3.2.4 allows either choice), as
        # most backbone routers do: each hop then shows an address of its own AS.
        nsutil.sysctl("net/ipv4/icmp_errors_use_inbound_ifaddr", 1)
    if role in MULTIPATH_ROUTERS:
        # 1 = layer-4 hash (addresses, protocol, ports): the per-flow split a Paris traceroute keeps.
        nsutil.sysctl("net/ipv4/fib_multipath_hash_policy", 1)
        # The kernel orders a flow's addresses and ports before hashing (__flow_hash_consistentify), so a
        # flow and its reverse hash alike; with one seed on both routers (Linux 6.11+; older kernels share
        # one boot-time key) the border returns every flow over the chain the ISP sent it on.
        nsutil.sysctl("net/ipv4/fib_multipath_hash_seed", MULTIPATH_SEED, missing_ok=True)


def dst_args(route_dst: str) -> dict[str, Any]:
    """pyroute2's dst and dst_len for a topology route destination ("default" or "NET/LEN")."""
    if route_dst == "default":
        return {"dst": "0.0.0.0", "dst_len": 0}
    net, length = route_dst.split("/")
    return {"dst": net, "dst_len": int(length)}


def _route_args(route: topology.Route) -> dict[str, Any]:
    args: dict[str, Any] = {**dst_args(route.dst), "table": route.table}
    if len(route.gateways) == 1:
        args["gateway"] = route.gateways[0]
    else:
        args["multipath"] = [{"gateway": gw} for gw in route.gateways]
    return args


def wire_ifname(link_name: str, side: str) -> str:
    """The name, in the wire namespace, of the peer of a delay link's `side` ("a" or "b") end."""
    return f"{link_name}-{side}"  # at most 15 characters: "border-d176-a"


def make_links(names: dict[str, str], scenario: Scenario, backend: str) -> None:
    """Every veth pair of the lab; with the wire, both router ends of a delay link peer into its namespace."""
    wire = names[WIRE]
    for lk in topology.links(scenario.options):
        ns_a, ns_b = names[lk.a], names[lk.b]
        via_wire = backend == "wire" and lk.name in scenario.links
        if via_wire:
            for side, ns, ifname in (("a", ns_a, lk.a_ifname), ("b", ns_b, lk.b_ifname)):
                with netlink(ns) as ipr:
                    peer = {"ifname": wire_ifname(lk.name, side), "net_ns_fd": wire}
                    ipr.link("add", ifname=ifname, kind="veth", peer=peer)
            with netlink(wire) as ipr:
                for side in ("a", "b"):
                    (idx,) = ipr.link_lookup(ifname=wire_ifname(lk.name, side))
                    # Promiscuous: the wire end must take frames addressed to the router on the far side.
                    ipr.link("set", index=idx, flags=0x101, change=0x101)  # IFF_UP | IFF_PROMISC
        else:
            with netlink(ns_a) as ipr:
                ipr.link(
                    "add", ifname=lk.a_ifname, kind="veth", peer={"ifname": lk.b_ifname, "net_ns_fd": ns_b}
                )


def configure_namespace(role: str, ns: str, scenario: Scenario, backend: str, flip: str) -> None:
    """One namespace after make_links: MACs, addresses, static neighbours, routes (the flip prefix on
    `flip`), policy rules, netem qdiscs or the wire's offloads, and its NAT."""
    opts = scenario.options
    lab_links = topology.links(opts)
    delayed_here = {
        (lk.a_ifname if lk.a == role else lk.b_ifname): lk
        for lk in lab_links
        if role in (lk.a, lk.b) and lk.name in scenario.links
    }
    with netlink(ns) as ipr:
        (lo,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo, state="up")
        own = []  # (link, our side, our interface index): MACs first, addresses, then up
        for lk in lab_links:
            if role in (lk.a, lk.b):
                side = "a" if lk.a == role else "b"
                (idx,) = ipr.link_lookup(ifname=lk.a_ifname if side == "a" else lk.b_ifname)
                ipr.link("set", index=idx, address=lk.mac(side))
                own.append((lk, side, idx))
        for ifname, addr, plen in topology.addresses(role, opts):
            (idx,) = ipr.link_lookup(ifname=ifname)
            ipr.addr("add", index=idx, address=addr, prefixlen=plen)
        for lk, side, idx in own:
            ipr.link("set", index=idx, state="up")
            # Static neighbours: no ARP through the delay links, no first-packet resolution delay.
            peer_addr, peer_mac = (lk.b_addr, lk.mac("b")) if side == "a" else (lk.a_addr, lk.mac("a"))
            ipr.neigh("add", dst=peer_addr, lladdr=peer_mac, ifindex=idx, state=0x80)  # NUD_PERMANENT
        for route in topology.routes(role, flip, opts):
            ipr.route("add", **_route_args(route))
        for dst in topology.blackhole_routes(role):
            ipr.route("add", **dst_args(dst), table=topology.TABLE_BLACKHOLE, type="blackhole")
        for rule in topology.rules(role):
            args: dict[str, Any] = {"priority": rule.priority, "table": rule.table}
            if rule.src:
                net, length = rule.src.split("/")
                args.update(src=net, src_len=int(length))
            if rule.iif_lo:
                args["iifname"] = "lo"
            if rule.ip_proto is not None:
                args["ip_proto"] = rule.ip_proto
            ipr.rule("add", **args)
        if backend == "netem":
            for ifname, lk in delayed_here.items():
                p = scenario.links[lk.name]
                (idx,) = ipr.link_lookup(ifname=ifname)
                ipr.tc(
                    "add",
                    "netem",
                    index=idx,
                    handle="1:0",
                    delay=int(p.delay_ms * 1000),
                    jitter=int(p.jitter_ms * 1000),
                    loss=p.loss_pct,
                )
    if backend == "wire" and delayed_here:
        with nsutil.inside(ns):
            for ifname in delayed_here:
                nsutil.disable_offloads(ifname)
    ruleset = nat_ruleset(role, opts)
    if ruleset:
        _nft(ns, ruleset)


NFT_TABLE = "nkprobe_lab"


def nat_ruleset(role: str, opts: Options) -> str:
    """The nftables ruleset of one namespace for `opts` ("" for none): the home router's masquerade, the
    ISP's CGNAT. Conntrack maps every reply, and every ICMP error quoting a translated probe (RELATED,
    nf_nat_icmp_reply_translation rewrites the quoted header too), back to the vantage.

    >>> print(nat_ruleset("home", Options(nat=True)))
    table ip nkprobe_lab {
      chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "isp" masquerade
      }
    }
    >>> "snat to 198.18.1.254" in nat_ruleset("isp", Options(cgnat=True))
    True
    >>> nat_ruleset("cu1", Options(nat=True, cgnat=True))
    ''
    """
    if role == "home" and opts.nat:
        # A home router (OpenWrt's fw4 does the same): masquerade what leaves the WAN. Ports and ICMP
        # identifiers are kept unless they clash; "random" makes the NAT pick new ones per flow.
        rule = 'oifname "isp" masquerade' + (" random" if opts.nat_random else "")
    elif role == "isp" and opts.cgnat:
        # Carrier-grade NAT (RFC 6888): customers' 100.64.0.0/10 sources leave as one public address.
        rule = f'iifname "home" ip saddr 100.64.0.0/10 snat to {topology.CGNAT_PUBLIC}'
        if not opts.nat:  # without a home NAT the vantage's own address reaches the ISP
            rule = f'iifname "home" oifname != "home" snat to {topology.CGNAT_PUBLIC}'
    else:
        return ""
    return "\n".join(
        (
            f"table ip {NFT_TABLE} {{",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f"    {rule}",
            "  }",
            "}",
        )
    )


def _nft(ns: str, ruleset: str) -> None:
    """Load `ruleset` with nft(8) inside namespace `ns`."""
    nft = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if Path(p).exists()), None)
    if nft is None:
        raise LabError("the lab's NAT needs nftables: apt-get install nftables (or drop --nat/--cgnat)")
    with nsutil.inside(ns):  # the child inherits this thread's namespace
        proc = subprocess.run([nft, "-f", "-"], input=ruleset, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"nft in {ns} failed: {proc.stderr.strip() or proc.returncode}; see `nft -f` input")
