"""Per /24 of the destination, the neighbour ASes of the destination AS that BGP shows, and whether a
traced upstream tag is among them. Pure: documents in, answers out.

Traffic to an address follows the most specific route covering it, so a /24's neighbours come from the
routes of the longest announced prefix that covers it (AS131279 announces four /24s, tests/fixtures/bgp; a
covering /22 counts only for a /24 nobody announces). A /24 no route covers falls back to the AS-level
asn-neighbours answer, when one was given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agent.bgp.ripestat import LOOKING_GLASS, Document, neighbour_of

OTHER = "other"  # the tag for a crossing from an AS in no upstream group (README, first section)
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class PrefixView:
    prefix: str  # a /24 of destination.prefixes, e.g. "175.45.176.0/24"
    neighbours: frozenset[int]  # ASes just before the destination AS in the routes that count
    source: str  # "looking-glass 175.45.176.0/24", "asn-neighbours", or "" (BGP says nothing)
    routes: int = 0  # routes that count (looking glass), 0 for asn-neighbours
    other_origins: frozenset[int] = frozenset()  # origins of covering routes other than the destination


@dataclass(frozen=True, slots=True)
class BgpView:
    destination_asn: int
    prefixes: tuple[PrefixView, ...]
    time: float | None  # the oldest document's time (Unix), None if none is dated

    def get(self, prefix: str) -> PrefixView | None:
        for p in self.prefixes:
            if p.prefix == prefix:
                return p
        return None


def slash24s(prefixes: Iterable[str]) -> list[ipaddress.IPv4Network]:
    """Every /24 of the destination prefixes (a /24 or longer stays itself).

    >>> [str(n) for n in slash24s(["175.45.176.0/23"])]
    ['175.45.176.0/24', '175.45.177.0/24']
    """
    out: list[ipaddress.IPv4Network] = []
    for p in prefixes:
        net = ipaddress.IPv4Network(p)
        out.extend(net.subnets(new_prefix=24) if net.prefixlen < 24 else [net.supernet(new_prefix=24)])
    return out


def build_view(documents: Iterable[Document], destination_asn: int, prefixes: Iterable[str]) -> BgpView:
    docs = list(documents)
    routes = [r for d in docs if d.call == LOOKING_GLASS for r in d.routes]
    as_level = frozenset(
        n.asn
        for d in docs
        if d.call != LOOKING_GLASS and d.resource == str(destination_asn)
        for n in d.neighbours
        # "uncertain" = left, seen only as a direct RIS peer: still an adjacency in the paths, so it
        # counts; leaving it out would raise a false "absent from BGP" for an upstream that peers with RIS.
        if n.side in ("left", "uncertain")
    )
    has_as_level = any(d.call != LOOKING_GLASS and d.resource == str(destination_asn) for d in docs)
    views = []
    for net in slash24s(prefixes):
        covering = [r for r in routes if net.subnet_of(r.prefix)]
        if covering:
            longest = max(r.prefix.prefixlen for r in covering)
            chosen = [r for r in covering if r.prefix.prefixlen == longest]
            ours = [r for r in chosen if r.as_path and r.as_path[-1] == destination_asn]
            neighbours = frozenset(n for r in ours if (n := neighbour_of(r.as_path, destination_asn)))
            others = frozenset(r.as_path[-1] for r in chosen if r.as_path and r not in ours)
            views.append(
                PrefixView(str(net), neighbours, f"looking-glass {chosen[0].prefix}", len(ours), others)
            )
        elif has_as_level:
            views.append(PrefixView(str(net), as_level, "asn-neighbours"))
        else:
            views.append(PrefixView(str(net), frozenset(), ""))
    times = [d.time for d in docs if d.time is not None]
    return BgpView(destination_asn, tuple(views), min(times) if times else None)


def tags_of(neighbours: Iterable[int], groups: Mapping[str, Iterable[int]]) -> frozenset[str]:
    """The upstream tags the neighbour ASes stand for; OTHER for a neighbour in no group.

    >>> sorted(tags_of([134544, 20485, 3356], {"china_unicom": [4837, 134544], "transtelecom": [20485]}))
    ['china_unicom', 'other', 'transtelecom']
    """
    owner = {asn: tag for tag, asns in groups.items() for asn in asns}
    return frozenset(owner.get(asn, OTHER) for asn in neighbours)


@dataclass(frozen=True, slots=True)
class BgpCheck:
    """A view resolved against the config's upstream groups: prefix -> the tags BGP shows there."""

    view: BgpView
    tags: Mapping[str, frozenset[str]]  # only /24s BGP says something about

    @staticmethod
    def of(view: BgpView, groups: Mapping[str, Iterable[int]]) -> BgpCheck:
        return BgpCheck(view, {p.prefix: tags_of(p.neighbours, groups) for p in view.prefixes if p.source})

    def in_bgp(self, prefix: str, tag: str) -> bool | None:
        """Whether the traced `tag` of a target in `prefix` is among the /24's BGP neighbours; None when
        either side does not know (tag unknown, or no BGP data for the /24).

        >>> v = BgpView(131279, (PrefixView("175.45.177.0/24", frozenset({20485}), "asn-neighbours"),), None)
        >>> c = BgpCheck.of(v, {"china_unicom": [4837], "transtelecom": [20485]})
        >>> c.in_bgp("175.45.177.0/24", "transtelecom"), c.in_bgp("175.45.177.0/24", "china_unicom")
        (True, False)
        >>> c.in_bgp("175.45.177.0/24", "unknown") is None, c.in_bgp("175.45.176.0/24", "other") is None
        (True, True)
        """
        shown = self.tags.get(prefix)
        if shown is None or tag == UNKNOWN:
            return None
        return tag in shown
