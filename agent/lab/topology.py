"""The lab's fixed shape: namespaces, links, addresses, routes and what a traceroute should see.

Pure data and arithmetic, no I/O: `kernel.py` applies it with pyroute2, `info.py` and the tests read what it
predicts. Every address is inside 198.18.0.0/15 (RFC 2544 benchmarking space), so nothing here can ever be
confused with, or leak to, a real network.

Addressing: each router-to-router link is a /30 taken from the address block of the AS of its *far* end
(the side away from the vantage point), because with `icmp_errors_use_inbound_ifaddr=1` a router answers a
traceroute probe from the interface the probe came in on: hop N's address then belongs to hop N's own AS,
as it usually does on the real Internet.

    block             AS       holds
    198.18.0.0/24     64512    vp-home link (the vantage host and its home router)
    198.18.1.0/24     64513    home-isp link (the access ISP)
    198.18.48.0/24    4837     China-Unicom-like chain (isp-cu1, cu1-cu2)
    198.18.85.0/24    20485    TransTeleCom-like chain (isp-ttk1, ttk1-ttk2, ttk2-ttk3)
    198.19.176.0/22   131279   the destination: four /24s, hosts .10 and .20 in each
    198.19.180.0/24   131279   the destination's border router (cu2-border, ttk3-border, border-dNNN)
    100.64.1.0/30     -        home-isp link instead of 198.18.1.0/30 with the CGNAT option (RFC 6598
                               shared address space, in no AS table: as a real CGNAT hop shows)

Options (`Options`, all off by default): masquerading NAT at the home router, a carrier-grade NAT at the
ISP (the home router's WAN side in 100.64.0.0/10, translated to CGNAT_PUBLIC), and ICMP rate limits on
routers and hosts at the kernel's defaults. They change the home-isp addresses and the routes to the home
network here; kernel.py adds the nftables rules and sysctls.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass
from typing import Final

CHINA: Final = "china_unicom"
TTK: Final = "transtelecom"
UPSTREAMS: Final = (CHINA, TTK)

# Namespace roles (the suffix after the prefix: "nkp-" + "vp" = "nkp-vp").
VANTAGE: Final = "vp"
WIRE: Final = "wire"  # holds the two outer ends of every userspace delay link, nothing else
ROUTERS: Final = ("home", "isp", "cu1", "cu2", "ttk1", "ttk2", "ttk3", "border")
SILENT_ROUTERS: Final = ("ttk2",)  # never sends ICMP (policy route of its own packets to a blackhole)
MULTIPATH_ROUTERS: Final = ("isp", "border")  # split 198.19.178.0/24 per flow (L4 hash)
SLASH24S: Final = ("176", "177", "178", "179")
HOSTS: Final = tuple(f"d{n}" for n in SLASH24S)
ROLES: Final = (VANTAGE, *ROUTERS, *HOSTS, WIRE)

DESTINATION: Final = "198.19.176.0/22"
DESTINATION_ASN: Final = 131279
ECHO_HOST: Final = 10  # answers ICMP echo and TCP port 80
QUIET_HOST: Final = 20  # sends no ICMP at all (so ignores echo) but accepts TCP port 80
LISTEN_PORT: Final = 80

# How each /24 is routed: one upstream always, both (per-flow multipath), or whichever `flip` chose.
PREFIX_ROLE: Final[dict[str, str]] = {
    "198.19.176.0/24": CHINA,
    "198.19.177.0/24": TTK,
    "198.19.178.0/24": "split",
    "198.19.179.0/24": "flip",
}
FLIP_PREFIX: Final = "198.19.179.0/24"
SPLIT_PREFIX: Final = "198.19.178.0/24"

# (block, ASN, what it is) for the prefix2as file.
AS_BLOCKS: Final = (
    ("198.18.0.0/24", 64512, "home network"),
    ("198.18.1.0/24", 64513, "access ISP"),
    ("198.18.48.0/24", 4837, "China-Unicom-like chain"),
    ("198.18.85.0/24", 20485, "TransTeleCom-like chain"),
    ("198.19.176.0/22", DESTINATION_ASN, "destination"),
    ("198.19.180.0/24", DESTINATION_ASN, "destination border"),
)


# The CGNAT's public address: the ISP translates every flow from its customers (100.64.0.0/10) to it, an
# address of its own AS block, as real CGNAT pools are (RFC 6598 section 7, RFC 6888).
CGNAT_PUBLIC: Final = "198.18.1.254"
CGNAT_BLOCK: Final = "100.64.1.0/30"  # the home-isp link with CGNAT on: home .1, ISP .2
# Linux's defaults (Documentation/networking/ip-sysctl.rst): per peer one ICMP error per 1000 ms after a
# burst of 6 (XRLIM_BURST_FACTOR), at most 1000 a second in all after a burst of 50; ratemask 0x1818
# limits dest unreachable, source quench, time exceeded and parameter problem, never echo replies.
KERNEL_ICMP_RATELIMIT_MS: Final = 1000
KERNEL_ICMP_MSGS_PER_SEC: Final = 1000
KERNEL_ICMP_MSGS_BURST: Final = 50
KERNEL_ICMP_RATEMASK: Final = 0x1818


@dataclass(frozen=True)
class Options:
    """What makes the lab look like a real volunteer's network; the default is the plain routed lab."""

    nat: bool = False  # the home router masquerades the vantage network behind its WAN address
    nat_random: bool = False  # ... and picks random source ports / ICMP identifiers (nft "random")
    cgnat: bool = False  # the ISP puts the home router in 100.64.0.0/10 and translates it to CGNAT_PUBLIC
    rate_limit: bool = False  # routers and hosts rate-limit their ICMP errors like real ones
    icmp_ratelimit_ms: int = KERNEL_ICMP_RATELIMIT_MS  # per peer: one error per this many ms (burst 6)
    icmp_msgs_per_sec: int = KERNEL_ICMP_MSGS_PER_SEC  # per namespace, all peers together

    @property
    def any(self) -> bool:
        return self.nat or self.cgnat or self.rate_limit

    @property
    def public_address(self) -> str:
        """Where the lab's far side sees the vantage's probes come from.

        >>> Options().public_address, Options(nat=True).public_address, Options(cgnat=True).public_address
        ('198.18.0.1', '198.18.1.1', '198.18.1.254')
        """
        if self.cgnat:
            return CGNAT_PUBLIC
        return link("home-isp").a_addr if self.nat else link("vp-home").a_addr


PLAIN: Final = Options()


@dataclass(frozen=True)
class Link:
    """A point-to-point link; `a` is the end nearer the vantage point."""

    name: str
    a: str  # namespace role
    b: str
    a_addr: str
    b_addr: str
    index: int  # position in LINKS, used for MAC addresses

    @property
    def a_ifname(self) -> str:
        """The interface in `a`'s namespace is named after the neighbour it leads to."""
        return self.b

    @property
    def b_ifname(self) -> str:
        return self.a

    def mac(self, side: str) -> str:
        """Locally administered, fixed MACs so neighbour entries can be static (no ARP through the wire).

        >>> LINKS[2].mac("b")
        '02:6e:6b:00:02:02'
        """
        return f"02:6e:6b:00:{self.index:02x}:{1 if side == 'a' else 2:02x}"


def _p2p(block: str, slot: int) -> tuple[str, str]:
    """Addresses .1 and .2 of the `slot`-th /30 of `block`.

    >>> _p2p("198.18.48.0/24", 1)
    ('198.18.48.5', '198.18.48.6')
    """
    base = ipaddress.ip_network(block).network_address + 4 * slot
    return str(base + 1), str(base + 2)


def _links() -> tuple[Link, ...]:
    plan = (
        ("vp", "home", "198.18.0.0/24", 0),
        ("home", "isp", "198.18.1.0/24", 0),
        ("isp", "cu1", "198.18.48.0/24", 0),
        ("cu1", "cu2", "198.18.48.0/24", 1),
        ("cu2", "border", "198.19.180.0/24", 0),
        ("isp", "ttk1", "198.18.85.0/24", 0),
        ("ttk1", "ttk2", "198.18.85.0/24", 1),
        ("ttk2", "ttk3", "198.18.85.0/24", 2),
        ("ttk3", "border", "198.19.180.0/24", 1),
        *(("border", host, "198.19.180.0/24", 2 + i) for i, host in enumerate(HOSTS)),
    )
    links = []
    for index, (a, b, block, slot) in enumerate(plan):
        a_addr, b_addr = _p2p(block, slot)
        links.append(Link(f"{a}-{b}", a, b, a_addr, b_addr, index))
    return tuple(links)


LINKS: Final = _links()
LINK_NAMES: Final = tuple(link.name for link in LINKS)
_BY_NAME: Final = {link.name: link for link in LINKS}


def links(opts: Options = PLAIN) -> tuple[Link, ...]:
    """The links with `opts`: with CGNAT the home-isp link is numbered from 100.64.0.0/10.

    >>> [lk.a_addr for lk in links(Options(cgnat=True)) if lk.name == "home-isp"]
    ['100.64.1.1']
    """
    if not opts.cgnat:
        return LINKS
    home_isp = _BY_NAME["home-isp"]
    a_addr, b_addr = _p2p(CGNAT_BLOCK, 0)
    changed = Link(home_isp.name, home_isp.a, home_isp.b, a_addr, b_addr, home_isp.index)
    return tuple(changed if lk.name == home_isp.name else lk for lk in LINKS)


def link(name: str, opts: Options = PLAIN) -> Link:
    if opts.cgnat and name == "home-isp":
        return links(opts)[_BY_NAME[name].index]
    return _BY_NAME[name]


def namespace(prefix: str, role: str) -> str:
    """The namespace of one role.

    >>> namespace("nkp-", "vp")
    'nkp-vp'
    """
    return f"{prefix}{role}"


def host_address(slash24: str, host: int) -> str:
    """Host number `host` of a /24.

    >>> host_address("198.19.177.0/24", 20)
    '198.19.177.20'
    """
    return str(ipaddress.ip_network(slash24).network_address + host)


# The routers each upstream's chain crosses, in order, between the ISP and the border.
CHAIN: Final[dict[str, tuple[str, ...]]] = {CHINA: ("cu1", "cu2"), TTK: ("ttk1", "ttk2", "ttk3")}


def path_roles(slash24: str, upstream: str) -> tuple[str, ...]:
    """Namespaces a packet from the vantage point crosses to a host of `slash24` via `upstream`.

    >>> path_roles("198.19.176.0/24", "china_unicom")
    ('vp', 'home', 'isp', 'cu1', 'cu2', 'border', 'd176')
    """
    host = "d" + slash24.split(".")[2]
    return (VANTAGE, "home", "isp", *CHAIN[upstream], "border", host)


def path_links(slash24: str, upstream: str, opts: Options = PLAIN) -> tuple[Link, ...]:
    roles = path_roles(slash24, upstream)
    return tuple(link(f"{a}-{b}", opts) for a, b in itertools.pairwise(roles))


def expected_hops(
    slash24: str, upstream: str, host: int = ECHO_HOST, opts: Options = PLAIN
) -> tuple[str | None, ...]:
    """What `traceroute -n` from the vantage point shows: each router's inbound address, None if silent.
    NAT changes nothing here (routers beyond it answer the translated address, the NAT maps the error
    back); CGNAT shows the ISP's 100.64 address at hop 2.

    >>> expected_hops("198.19.177.0/24", "transtelecom")
    ('198.18.0.2', '198.18.1.2', '198.18.85.2', None, '198.18.85.10', '198.19.180.6', '198.19.177.10')
    >>> expected_hops("198.19.176.0/24", "china_unicom", opts=Options(nat=True, cgnat=True))[:2]
    ('198.18.0.2', '100.64.1.2')
    """
    hops: list[str | None] = []
    for hop_link in path_links(slash24, upstream, opts)[:-1]:
        hops.append(None if hop_link.b in SILENT_ROUTERS else hop_link.b_addr)
    hops.append(host_address(slash24, host))
    return tuple(hops)


def upstreams_of(slash24: str) -> tuple[str, ...]:
    """The upstreams a /24 can be reached through (the flip /24: both, one at a time)."""
    role = PREFIX_ROLE[slash24]
    return (role,) if role in UPSTREAMS else UPSTREAMS


def upstream_of_gateway(gateway: str) -> str | None:
    """Which upstream a next hop of the ISP or the border router belongs to.

    >>> upstream_of_gateway("198.18.48.2"), upstream_of_gateway("198.19.180.5")
    ('china_unicom', 'transtelecom')
    """
    for up, (first, last) in {CHINA: ("cu1", "cu2"), TTK: ("ttk1", "ttk3")}.items():
        if gateway in (link(f"isp-{first}").b_addr, link(f"{last}-border").a_addr):
            return up
    return None


@dataclass(frozen=True)
class Route:
    dst: str  # "default" or a CIDR
    gateways: tuple[str, ...]  # more than one: an ECMP multipath route
    table: int = 254  # main


@dataclass(frozen=True)
class Rule:
    priority: int
    table: int
    src: str | None = None  # CIDR
    iif_lo: bool = False  # only packets the namespace itself sends
    ip_proto: int | None = None


TABLE_BLACKHOLE: Final = 250
TABLE_BY_ROLE: Final[dict[str, int]] = {CHINA: 100, TTK: 101, "split": 102, "flip": 103}


def _fwd(upstream: str) -> str:
    """The ISP's next hop into an upstream's chain."""
    return link(f"isp-{CHAIN[upstream][0]}").b_addr


def _back(upstream: str) -> str:
    """The border's next hop back into an upstream's chain."""
    return link(f"{CHAIN[upstream][-1]}-border").a_addr


def gateways_for(router: str, slash24: str, flip: str) -> tuple[str, ...]:
    """Next hops the ISP (forward) or the border (return) uses for a destination /24 now."""
    role = PREFIX_ROLE[slash24]
    ups = (flip,) if role == "flip" else upstreams_of(slash24)
    hop = _fwd if router == "isp" else _back
    return tuple(hop(up) for up in ups)


def routes(role: str, flip: str, opts: Options = PLAIN) -> tuple[Route, ...]:
    """Static routes of one namespace. The chains are symmetric: forward and return follow the same
    routers, because the ISP picks the chain by destination and the border by source (policy rules).
    Behind a home NAT the ISP has no route to the home network: only translated traffic can come back."""
    dest21 = "198.19.176.0/21"  # the /22 plus the border block
    if role == VANTAGE:
        return (Route("default", (link("vp-home").b_addr,)),)
    if role == "home":
        return (Route("default", (link("home-isp", opts).b_addr,)),)
    if role == "isp":
        home = [] if opts.nat else [Route("198.18.0.0/24", (link("home-isp", opts).a_addr,))]
        out = [
            *home,
            Route("198.18.48.0/24", (_fwd(CHINA),)),
            Route("198.18.85.0/24", (_fwd(TTK),)),
            Route("198.19.180.0/24", (_fwd(CHINA),)),
        ]
        out += [Route(p, gateways_for("isp", p, flip)) for p in PREFIX_ROLE]
        return tuple(out)
    if role in ("cu1", "cu2", "ttk1", "ttk2", "ttk3"):
        chain = CHAIN[CHINA] if role.startswith("cu") else CHAIN[TTK]
        i = chain.index(role)
        prev = "isp" if i == 0 else chain[i - 1]
        nxt = "border" if i == len(chain) - 1 else chain[i + 1]
        out = [
            Route("default", (link(f"{prev}-{role}").a_addr,)),
            Route(dest21, (link(f"{role}-{nxt}").b_addr,)),
        ]
        if nxt != "border":  # the rest of this chain's own block lies further on
            block = "198.18.48.0/24" if role.startswith("cu") else "198.18.85.0/24"
            out.append(Route(block, (link(f"{role}-{nxt}").b_addr,)))
        return tuple(out)
    if role == "border":
        out = [Route("default", (_back(CHINA),))]
        out += [Route(p, (link(f"border-d{p.split('.')[2]}").b_addr,)) for p in PREFIX_ROLE]
        out += [Route("default", (_back(CHINA),), TABLE_BY_ROLE[CHINA])]
        out += [Route("default", (_back(TTK),), TABLE_BY_ROLE[TTK])]
        out += [Route("default", (_back(CHINA), _back(TTK)), TABLE_BY_ROLE["split"])]
        out += [Route("default", (_back(flip),), TABLE_BY_ROLE["flip"])]
        return tuple(out)
    if role in HOSTS:
        return (Route("default", (link(f"border-{role}").a_addr,)),)
    return ()


def blackhole_routes(role: str) -> tuple[str, ...]:
    """Destinations routed to a blackhole in TABLE_BLACKHOLE (only used through `rules`)."""
    return ("default",) if role in SILENT_ROUTERS or role in HOSTS else ()


def rules(role: str) -> tuple[Rule, ...]:
    if role in SILENT_ROUTERS:
        # Everything the router itself sends (its ICMP time-exceeded, echo replies) goes to a blackhole;
        # forwarded packets have a real input interface and never match `iif lo`. No netfilter needed.
        return (Rule(90, TABLE_BLACKHOLE, iif_lo=True),)
    if role in HOSTS:
        # Host .20 sends no ICMP (so it ignores echo) but still completes TCP handshakes.
        quiet = host_address(f"198.19.{role[1:]}.0/24", QUIET_HOST)
        return (Rule(90, TABLE_BLACKHOLE, src=f"{quiet}/32", iif_lo=True, ip_proto=1),)
    if role == "border":
        out = [Rule(100 + i, TABLE_BY_ROLE[r], src=p) for i, (p, r) in enumerate(PREFIX_ROLE.items())]
        # Its own ICMP errors leave from the interface the probe came in on: send them back that way.
        out.append(Rule(110, TABLE_BY_ROLE[CHINA], src=link("cu2-border").b_addr + "/32"))
        out.append(Rule(111, TABLE_BY_ROLE[TTK], src=link("ttk3-border").b_addr + "/32"))
        return tuple(out)
    return ()


def addresses(role: str, opts: Options = PLAIN) -> tuple[tuple[str, str, int], ...]:
    """(interface, address, prefix length) of one namespace."""
    out: list[tuple[str, str, int]] = []
    for lk in links(opts):
        if lk.a == role:
            out.append((lk.a_ifname, lk.a_addr, 30))
        if lk.b == role:
            out.append((lk.b_ifname, lk.b_addr, 30))
    if role in HOSTS:
        slash24 = f"198.19.{role[1:]}.0/24"
        out += [("border", host_address(slash24, h), 32) for h in (ECHO_HOST, QUIET_HOST)]
    if role == "isp" and opts.cgnat:
        out.append(("lo", CGNAT_PUBLIC, 32))  # the translated flows' address, reached via any interface
    return tuple(out)


def pfx2as() -> str:
    """The lab's IP-to-AS table in CAIDA RouteViews prefix2as format (PREFIX<TAB>LENGTH<TAB>ASN)."""
    lines = []
    for block, asn, _what in AS_BLOCKS:
        net = ipaddress.ip_network(block)
        lines.append(f"{net.network_address}\t{net.prefixlen}\t{asn}")
    return "\n".join(lines) + "\n"
