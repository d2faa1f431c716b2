"""The live BGP view of the destination, sans-I/O: RIPEstat state and RIS Live messages in, per-/24
upstream shares, visibility, RPKI state and changes out. No socket, no clock: every call takes `now`.

The view holds, per RIS collector peer ("rrc00 193.0.0.56"), the routes it has for the destination
prefixes and anything covering them. Traffic follows the most specific route (RFC 1812 section 5.2.4.3),
so for each /24 each peer counts once, with its most specific covering route; the AS just before the
origin on that route's path (prepends skipped, agent.bgp.ripestat.neighbour_of) is the /24's upstream as
that peer sees it, named by its group (`[upstreams]`, `other` for an AS in no group, `unknown` for a
route that is not the destination AS's or names nothing before it).

- `apply_state(state, now)`: a RIPEstat refresh (agent.bgp.fetch): the looking glass replaces every
  peer's routes; routing-status gives the visibility baseline; rpki-validation the RPKI state.
- `apply_message(message, now)`: one decoded RIS Live message (https://ris-live.ripe.net/manual/,
  `ris_message` of type UPDATE: `host`, `peer`, `path`, `announcements[].prefixes`, `withdrawals`;
  `RIS_PEER_STATE` with `state` "down" drops the peer's routes). Its outcome (`applied`, `ignored`,
  `outside`, `malformed`, `error`) is counted; nothing a message holds can raise.

Both return the changes they caused: a /24's set of upstreams changed, it was withdrawn (no peer has a
route any more) or announced again. The first state ever applied is the baseline, not a change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.bgp.ripestat import Route, neighbour_of
from agent.bgp.view import OTHER, UNKNOWN, slash24s

OUTCOMES = ("applied", "ignored", "outside", "malformed", "error")
RPKI_STATES = ("valid", "invalid", "not_found")
CHANGE_KINDS = ("upstreams", "withdrawn", "announced")
# Bounds (DESIGN idea 9): RIS has about 1,500 peers; a peer holds at most the 29 prefixes that cover a
# /24 of a /22 or lie in it down to /24 (longer ones are filtered by most networks and ignored here).
MAX_PEERS = 8192
MAX_ROUTES_PER_PEER = 64


@dataclass(frozen=True, slots=True)
class RipestatState:
    """One RIPEstat refresh: the looking glass's routes (with their peers), and per /24 the visibility
    (routing-status: RIS full-table peers seeing it, of all) and the RPKI state of its origin."""

    routes: tuple[Route, ...]
    seeing: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # /24 -> (seeing, total)
    rpki: Mapping[str, str] = field(default_factory=dict)  # /24 -> valid | invalid | not_found
    time: float | None = None


@dataclass(frozen=True, slots=True)
class PrefixState:
    """What BGP shows for one /24 right now."""

    prefix: str
    peers: int  # peers with a route covering it
    shares: Mapping[str, float]  # every upstream label value -> share of those peers (0 when none)
    neighbours: frozenset[int]  # ASes just before the destination AS
    visibility: float | None  # 0..1; None before any data
    rpki: str | None  # valid | invalid | not_found; None before RIPEstat answered
    last_change: float | None  # Unix time of the last change of its upstream set or visibility to 0

    @property
    def upstreams(self) -> frozenset[str]:
        """The groups some peer's route enters the destination AS from (`unknown` is no group)."""
        return frozenset(tag for tag, share in self.shares.items() if share > 0 and tag != UNKNOWN)


@dataclass(frozen=True, slots=True)
class Change:
    prefix: str
    kind: str  # upstreams | withdrawn | announced
    old: frozenset[str]
    new: frozenset[str]
    at: float

    def describe(self) -> str:
        """One log line.

        >>> Change("175.45.176.0/24", "upstreams", frozenset({"china_unicom"}),
        ...        frozenset({"china_unicom", "transtelecom"}), 0.0).describe()
        '175.45.176.0/24: BGP upstreams china_unicom -> china_unicom, transtelecom'
        """
        if self.kind == "withdrawn":
            return f"{self.prefix}: withdrawn from BGP (no RIS peer has a route)"
        old = ", ".join(sorted(self.old)) or "none"
        new = ", ".join(sorted(self.new)) or "none"
        verb = "announced again, upstreams" if self.kind == "announced" else "BGP upstreams"
        return f"{self.prefix}: {verb} {old} -> {new}"


def label_values(groups: Iterable[str]) -> tuple[str, ...]:
    """The `upstream` label values: the groups, then other and unknown (as nkprobe_path_upstream_ratio).

    >>> label_values(["china_unicom", "transtelecom"])
    ('china_unicom', 'transtelecom', 'other', 'unknown')
    """
    return (*dict.fromkeys(g for g in groups if g not in (OTHER, UNKNOWN)), OTHER, UNKNOWN)


def rpki_state(status: str) -> str | None:
    """RIPEstat rpki-validation `status` as our three states; None for a value it does not document.

    >>> [rpki_state(s) for s in ("valid", "invalid_asn", "invalid_length", "unknown", "odd")]
    ['valid', 'invalid', 'invalid', 'not_found', None]
    """
    if status == "valid":
        return "valid"
    if status == "invalid" or status.startswith("invalid_"):
        return "invalid"
    if status in ("unknown", "not_found", "not-found"):
        return "not_found"
    return None


def _as_path(value: Any) -> tuple[int, ...] | None:
    """A RIS Live `path`: AS numbers, AS_SETs as nested lists (left out, as in
    agent.bgp.ripestat.parse_as_path); None when it is not a list of those."""
    if not isinstance(value, list):
        return None
    out: list[int] = []
    for item in value:
        if isinstance(item, bool):
            return None
        if isinstance(item, int):
            out.append(item)
        elif not isinstance(item, list):
            return None
    return tuple(out)


class LiveView:
    """The per-peer routes and per-/24 summaries; see the module docstring."""

    def __init__(self, destination_asn: int, prefixes: Iterable[str], groups: Mapping[str, Iterable[int]]):
        self.destination_asn = destination_asn
        self.slash24s = tuple(slash24s(prefixes))
        self.labels = label_values(groups)
        self._owner = {asn: tag for tag, asns in groups.items() for asn in asns}
        self._routes: dict[str, dict[ipaddress.IPv4Network, tuple[int, ...]]] = {}
        self._baseline: dict[str, tuple[float, int]] = {}  # /24 -> (routing-status ratio, peers then)
        self._rpki: dict[str, str] = {}
        self._last_change: dict[str, float] = {}
        self.counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        self.state_time: float | None = None  # when the last RIPEstat state was applied
        self.message_time: float | None = None  # when the last message was applied
        self._started = False
        # Swapped whole (never changed in place): a scrape in another thread reads one consistent tuple.
        self.prefixes: tuple[PrefixState, ...] = tuple(self._summary(n) for n in self.slash24s)

    # -- input ---------------------------------------------------------------------------------------

    def apply_state(self, state: RipestatState, now: float) -> list[Change]:
        routes: dict[str, dict[ipaddress.IPv4Network, tuple[int, ...]]] = {}
        for r in state.routes:
            if self._relevant(r.prefix):
                routes.setdefault(f"{r.collector} {r.peer}".strip(), {})[r.prefix] = r.as_path
        self._routes = routes
        self._rpki = {p: s for p, s in state.rpki.items() if s in RPKI_STATES}
        self._baseline = {}
        for net in self.slash24s:
            key = str(net)
            if key in state.seeing:
                seen, total = state.seeing[key]
                ratio = min(1.0, seen / total) if total > 0 else 0.0
                self._baseline[key] = (ratio, self._peers_seeing(net))
        self.state_time = now
        first = not self._started
        self._started = True
        return self._recompute(now, report=not first)

    def apply_message(self, message: Any, now: float) -> tuple[str, list[Change]]:
        outcome, changes = self._apply(message, now)
        self.counts[outcome] += 1
        if outcome == "applied":
            self.message_time = now
        return outcome, changes

    def _apply(self, message: Any, now: float) -> tuple[str, list[Change]]:
        if not isinstance(message, Mapping) or not isinstance(message.get("type"), str):
            return "malformed", []
        if message["type"] == "ris_error":
            return "error", []
        if message["type"] != "ris_message":
            return "ignored", []  # ris_subscribe_ok, pong, ris_rrc_list...
        data = message.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("type"), str):
            return "malformed", []
        host, peer = data.get("host"), data.get("peer")
        if not isinstance(host, str) or not isinstance(peer, str):
            return "malformed", []
        key = f"{host} {peer}"
        if data["type"] == "RIS_PEER_STATE":
            if data.get("state") == "down" and self._routes.pop(key, None):
                return "applied", self._recompute(now, report=self._started)
            return "ignored", []
        if data["type"] != "UPDATE":
            return "ignored", []  # OPEN, KEEPALIVE, NOTIFICATION
        parsed = self._update(data)
        if parsed is None:
            return "malformed", []
        announced, withdrawn, path = parsed
        if not announced and not withdrawn:
            return "outside", []
        table = self._routes.get(key)
        if table is None:
            if not announced or len(self._routes) >= MAX_PEERS:
                return "ignored", []
            table = self._routes[key] = {}
        for net in withdrawn:
            table.pop(net, None)
        for net in announced:
            if net in table or len(table) < MAX_ROUTES_PER_PEER:
                table[net] = path
        if not table:
            del self._routes[key]
        # Before the first RIPEstat state there is no baseline to differ from: applied, not reported.
        return "applied", self._recompute(now, report=self._started)

    def _update(
        self, data: Mapping[str, Any]
    ) -> tuple[list[ipaddress.IPv4Network], list[ipaddress.IPv4Network], tuple[int, ...]] | None:
        """The relevant announced and withdrawn prefixes and the path of an UPDATE; None if malformed."""
        announcements = data.get("announcements", [])
        withdrawals = data.get("withdrawals", [])
        if not isinstance(announcements, list) or not isinstance(withdrawals, list):
            return None
        texts: list[Any] = []
        for a in announcements:
            if not isinstance(a, Mapping) or not isinstance(a.get("prefixes"), list):
                return None
            texts.extend(a["prefixes"])
        path: tuple[int, ...] = ()
        if texts:
            parsed_path = _as_path(data.get("path"))
            if parsed_path is None:
                return None
            path = parsed_path
        announced = self._prefixes(texts)
        withdrawn = self._prefixes(withdrawals)
        if announced is None or withdrawn is None:
            return None
        return announced, withdrawn, path

    def _prefixes(self, texts: Sequence[Any]) -> list[ipaddress.IPv4Network] | None:
        out = []
        for text in texts:
            if not isinstance(text, str):
                return None
            try:
                net = ipaddress.ip_network(text)
            except ValueError:
                return None
            if isinstance(net, ipaddress.IPv4Network) and self._relevant(net):
                out.append(net)
        return out

    def _relevant(self, net: ipaddress.IPv4Network) -> bool:
        """A route that decides where some destination /24 goes: it covers one, or is one."""
        return net.prefixlen <= 24 and any(s.subnet_of(net) for s in self.slash24s)

    # -- output --------------------------------------------------------------------------------------

    def get(self, prefix: str) -> PrefixState | None:
        for p in self.prefixes:
            if p.prefix == prefix:
                return p
        return None

    def in_bgp(self, prefix: str, tag: str) -> bool | None:
        """Whether BGP shows the traced `tag` entering `prefix`; None when either side cannot tell.

        >>> v = LiveView(131279, ["175.45.176.0/24"], {"transtelecom": [20485]})
        >>> v.in_bgp("175.45.176.0/24", "transtelecom") is None  # no data yet
        True
        """
        p = self.get(prefix)
        if p is None or p.peers == 0 or tag == UNKNOWN:
            return None
        return tag in p.upstreams

    # -- computing -----------------------------------------------------------------------------------

    def _peers_seeing(self, net: ipaddress.IPv4Network) -> int:
        return sum(1 for table in self._routes.values() if any(net.subnet_of(r) for r in table))

    def _summary(self, net: ipaddress.IPv4Network) -> PrefixState:
        key = str(net)
        counts = dict.fromkeys(self.labels, 0)
        neighbours: set[int] = set()
        peers = 0
        for table in self._routes.values():
            covering = [r for r in table if net.subnet_of(r)]
            if not covering:
                continue
            peers += 1
            path = table[max(covering, key=lambda r: r.prefixlen)]
            n = neighbour_of(path, self.destination_asn)
            if n is None:
                counts[UNKNOWN] += 1
                continue
            neighbours.add(n)
            counts[self._owner.get(n, OTHER)] += 1
        shares = {tag: (c / peers if peers else 0.0) for tag, c in counts.items()}
        visibility: float | None
        if key in self._baseline:
            ratio, then = self._baseline[key]
            visibility = min(1.0, ratio * peers / then) if then else (ratio if peers else 0.0)
        elif self._started or self._routes:
            known = len(self._routes)
            visibility = peers / known if known else 0.0
        else:
            visibility = None
        return PrefixState(
            key,
            peers,
            shares,
            frozenset(neighbours),
            visibility,
            self._rpki.get(key),
            self._last_change.get(key),
        )

    def _recompute(self, now: float, report: bool = True) -> list[Change]:
        changes: list[Change] = []
        new: list[PrefixState] = []
        for old, net in zip(self.prefixes, self.slash24s, strict=True):
            cur = self._summary(net)
            kind = None
            if old.peers and not cur.peers:
                kind = "withdrawn"
            elif cur.peers and not old.peers:
                kind = "announced"
            elif cur.upstreams != old.upstreams:
                kind = "upstreams"
            if kind is not None and report:
                self._last_change[cur.prefix] = now
                cur = PrefixState(
                    cur.prefix, cur.peers, cur.shares, cur.neighbours, cur.visibility, cur.rpki, now
                )
                changes.append(Change(cur.prefix, kind, old.upstreams, cur.upstreams, now))
            new.append(cur)
        self.prefixes = tuple(new)
        return changes
