"""What the tagging rule knows besides the path and the AS table, and what it remembers between paths.

`Settings` is frozen: the [upstreams], [destination], [borders], [names] and [classify] values of one
config, with the integer ranges the rule compares addresses against computed once. `TagCaches` holds the
bounded memos of what the rule asks again and again (what kind of address a hop is, the tokens of a
reverse name): the same routers come back every round, on a Raspberry Pi, every minute.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.asn.table import ip_to_int
from agent.classify.exchanges import DEFAULT_EXCHANGE_PREFIXES
from agent.classify.rdns import name_tokens

# Addresses that never identify a network on a path (IANA special-purpose registry, RFC 6890): passed
# over, unless Settings.routed_prefixes lists them (a test bed numbered in such space, like the lab).
SPECIAL_PREFIXES: tuple[str, ...] = (
    "0.0.0.0/8",  # "this network", RFC 791
    "10.0.0.0/8",  # RFC 1918 (TTK's MPLS hops: 10.99.99.x, 10.4.4.1)
    "100.64.0.0/10",  # shared address space, RFC 6598 (carrier-grade NAT)
    "127.0.0.0/8",  # loopback, RFC 1122
    "169.254.0.0/16",  # link local, RFC 3927
    "172.16.0.0/12",  # RFC 1918
    "192.0.0.0/24",  # IETF protocol assignments, RFC 6890
    "192.168.0.0/16",  # RFC 1918
    "198.18.0.0/15",  # benchmarking, RFC 2544 (a test bed such as the lab lists it in routed_prefixes)
    "224.0.0.0/4",  # multicast, RFC 5771
    "240.0.0.0/4",  # reserved, RFC 1112
)


def _range(prefix: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(prefix, strict=False)
    return int(net.network_address), int(net.broadcast_address)


@dataclass(frozen=True)
class Settings:
    """Everything the tagger knows besides the path and the AS table; `from_config` builds it from a Config.

    Frozen: what it derives (integer ranges, reverse maps) is computed once here; what is remembered
    between paths (TagCaches) lives beside it, in the Tagger."""

    upstreams: Mapping[str, tuple[int, ...]]
    destination_asn: int | None = 131279
    destination_prefixes: tuple[str, ...] = ("175.45.176.0/22",)
    borders: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> addresses
    name_suffixes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> suffixes
    # Exchange-point peering LANs, passed over (defaults, sources, check date: agent/classify/exchanges.py).
    exchange_prefixes: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_EXCHANGE_PREFIXES))
    # Special-purpose space routed here (a test bed's own range; the lab's config names 198.18.0.0/15).
    routed_prefixes: tuple[str, ...] = ()
    max_gap: int = 5  # silent or passed-over hops allowed between the upstream hop and the destination
    # `other` claims that no upstream group carried the path: only when at most the usual silent hops
    # inside the destination (about three on published traces) separate that hop from it, or a silent upstream
    # router could hide in the gap.
    other_max_gap: int = 3
    _group_of: dict[int, str] = field(init=False, repr=False, compare=False)
    _border_of: dict[str, str] = field(init=False, repr=False, compare=False)
    _dest: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    _special: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    _routed: tuple[tuple[int, int], ...] = field(init=False, repr=False, compare=False)
    _ixp: tuple[tuple[int, int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Precomputed integer ranges: classify runs per flow, every minute, on a Raspberry Pi.
        group_of = {asn: g for g, asns in self.upstreams.items() for asn in asns}
        border_of = {a: g for g, addrs in self.borders.items() for a in addrs}
        object.__setattr__(self, "_group_of", group_of)
        object.__setattr__(self, "_border_of", border_of)
        object.__setattr__(self, "_dest", tuple(_range(p) for p in self.destination_prefixes))
        object.__setattr__(self, "_special", tuple(_range(p) for p in SPECIAL_PREFIXES))
        object.__setattr__(self, "_routed", tuple(_range(p) for p in self.routed_prefixes))
        object.__setattr__(
            self,
            "_ixp",
            tuple((*_range(p), f"{name} {p}" if name else p) for p, name in self.exchange_prefixes.items()),
        )

    def kind_of(self, address: str) -> tuple[str, str]:
        """("invalid"|"special"|"destination"|"exchange"|"public", exchange label), from prefixes only
        (TagCaches.kind_of remembers it)."""
        try:
            value = ip_to_int(address)
        except ValueError:
            return ("invalid", "")
        ixp = self.exchange(value)
        if self.in_destination_prefixes(value):
            return ("destination", "")
        if self.special(value):
            return ("special", "")
        if ixp is not None and self.border_group(address) is None:
            return ("exchange", ixp)
        return ("public", "")

    @classmethod
    def from_config(cls, config: object) -> Settings:
        """From an agent.config.Config (duck-typed so this module stays free of config loading)."""
        destination = getattr(config, "destination", None)
        names = getattr(config, "names", None)
        # [classify] exchange_prefixes: prefixes only; the defaults' names stay in the evidence.
        exchanges = getattr(getattr(config, "classify", None), "exchange_prefixes", None)
        return cls(
            upstreams=dict(getattr(config, "upstreams", {})),
            destination_asn=getattr(destination, "asn", None),
            destination_prefixes=tuple(getattr(destination, "prefixes", ())),
            borders=dict(getattr(config, "borders", {}) or {}),
            name_suffixes=dict(getattr(names, "suffixes", {}) or {}),
            exchange_prefixes=(
                dict(DEFAULT_EXCHANGE_PREFIXES)
                if exchanges is None
                else {p: DEFAULT_EXCHANGE_PREFIXES.get(p, "") for p in exchanges}
            ),
            routed_prefixes=tuple(getattr(getattr(config, "classify", None), "routed_prefixes", ())),
        )

    def group_of_asn(self, asn: int | None) -> str | None:
        if asn is None:
            return None
        return self._group_of.get(asn)

    def border_group(self, address: str) -> str | None:
        return self._border_of.get(address)

    def suffix_group(self, name: str) -> tuple[str, str] | None:
        """(group, suffix) when `name` ends in a configured suffix (a whole label: no 'xtranstelecom.net')."""
        name = name.lower().rstrip(".")
        for group, suffixes in self.name_suffixes.items():
            for suffix in suffixes:
                s = suffix.lower().strip(".")
                if name == s or name.endswith("." + s):
                    return group, s
        return None

    def in_destination_prefixes(self, value: int) -> bool:
        return any(lo <= value <= hi for lo, hi in self._dest)

    def special(self, value: int) -> bool:
        """Special-purpose space (RFC 6890) not listed as routed here."""
        if any(lo <= value <= hi for lo, hi in self._routed):
            return False
        return any(lo <= value <= hi for lo, hi in self._special)

    def exchange(self, value: int) -> str | None:
        for lo, hi, label in self._ixp:
            if lo <= value <= hi:
                return label
        return None


class TagCaches:
    """Bounded memos for one `Settings`: address kinds and reverse-name tokens (cleared when full)."""

    __slots__ = ("_kinds", "_tokens", "max_kinds", "max_names", "settings")

    def __init__(self, settings: Settings, max_kinds: int = 65536, max_names: int = 16384) -> None:
        self.settings = settings
        self.max_kinds, self.max_names = max_kinds, max_names
        # address -> (kind, exchange label): what the address is, independent of any AS table.
        self._kinds: dict[str, tuple[str, str]] = {}
        self._tokens: dict[str, tuple[tuple[str, str], ...]] = {}

    def kind_of(self, address: str) -> tuple[str, str]:
        """Settings.kind_of, remembered."""
        hit = self._kinds.get(address)
        if hit is None:
            if len(self._kinds) >= self.max_kinds:
                self._kinds.clear()
            hit = self._kinds[address] = self.settings.kind_of(address)
        return hit

    @property
    def kinds(self) -> Mapping[str, tuple[str, str]]:
        """The remembered kinds, read directly by the rule's inner loop (agent.classify.rules._rows)."""
        return self._kinds

    def name_tokens(self, name: str) -> tuple[tuple[str, str], ...]:
        """rdns.name_tokens, remembered."""
        hit = self._tokens.get(name)
        if hit is None:
            if len(self._tokens) >= self.max_names:
                self._tokens.clear()
            hit = self._tokens[name] = name_tokens(name)
        return hit
