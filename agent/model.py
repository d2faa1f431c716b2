"""Immutable value types shared by every layer: probing, classification, history and export.

Everything here is plain data (frozen dataclasses and one NamedTuple, no I/O). Addresses are kept as
text so the types stay family-neutral; the layers that need arithmetic parse them with `ipaddress`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import Field, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple


class Protocol(StrEnum):
    ICMP = "icmp"
    UDP = "udp"
    TCP = "tcp"


class ReplyKind(StrEnum):
    """What answered a probe."""

    TIME_EXCEEDED = "time_exceeded"  # ICMP type 11: an intermediate router
    UNREACHABLE = "unreachable"  # ICMP type 3 (port unreachable from the destination counts as reached)
    ECHO_REPLY = "echo_reply"  # ICMP type 0
    TCP_SYNACK = "tcp_synack"
    TCP_RST = "tcp_rst"
    OTHER = "other"


# ICMP destination-unreachable codes (RFC 792, RFC 1812 section 5.2.7.1) as RIPE Atlas writes them in "err".
# Code 3 (port unreachable) is the normal end of a UDP trace and is not an error there.
UNREACHABLE_ERR: dict[int, str] = {
    0: "N",  # network unreachable
    1: "H",  # host unreachable
    2: "P",  # protocol unreachable
    4: "F",  # fragmentation needed
    5: "S",  # source route failed
    9: "A",  # communication with destination network administratively prohibited
    10: "A",  # ... host administratively prohibited
    13: "A",  # communication administratively prohibited (RFC 1812): traceroute's !X
}


class Record:
    """Equality, hash and repr of a frozen dataclass, written once for all that use it: each is declared
    `@dataclass(frozen=True, eq=False, repr=False)` on this base and behaves as with `eq` and `repr`
    (equal to another of its class with equal compared fields, hashed by them, shown by the fields whose
    `repr` is true). dataclasses compiles those three methods anew for every class at every start (Python
    3.11), 0.1 ms a class, and `nkprobe trace` loads some thirty before its first probe (bench/startup.py);
    these are compiled once, into the module's bytecode. For values that are not hashed or compared on a
    per-packet path: these are slower per call than generated ones (a few microseconds; the receive
    path matches replies by plain tuples, agent.trace.registry)."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def _compared(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self) if f.compare)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"{type(self).__qualname__}({shown})"


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MplsLabel(Record):
    """One label stack entry from an ICMP extension object (RFC 4884, RFC 4950)."""

    label: int
    exp: int
    bottom: bool
    ttl: int


class Reply(NamedTuple):
    """One answer to one probe.

    A NamedTuple, not a frozen dataclass like its neighbours: as immutable, and made in a third of the
    time (a frozen dataclass sets each field through object.__setattr__); the probe engine makes one per
    answer it receives (bench/trace_bench.py, CPU per probe)."""

    address: str
    rtt_s: float
    kind: ReplyKind
    reply_ttl: int | None = None  # IP TTL of the reply packet as received
    icmp_type: int | None = None
    icmp_code: int | None = None
    quoted_ttl: int | None = None  # TTL of our probe as quoted back in the ICMP error
    size: int = 0  # bytes of the reply's IP packet
    mpls: tuple[MplsLabel, ...] = ()

    @property
    def err(self) -> str | None:
        """The RIPE Atlas "err" letter for an ICMP unreachable other than port unreachable, else None."""
        if self.kind is not ReplyKind.UNREACHABLE or self.icmp_code is None or self.icmp_code == 3:
            return None
        return UNREACHABLE_ERR.get(self.icmp_code, str(self.icmp_code))


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Hop(Record):
    """Every reply seen for one TTL (several probes per TTL, possibly from several addresses)."""

    ttl: int
    replies: tuple[Reply, ...] = ()
    probes_sent: int = 0

    @property
    def silent(self) -> bool:
        return not self.replies

    @property
    def addresses(self) -> tuple[str, ...]:
        """Distinct responding addresses in order of first answer."""
        return tuple(dict.fromkeys(r.address for r in self.replies))


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Path(Record):
    """The result of one Paris traceroute: one flow identifier, so one path through per-flow balancers."""

    target: str
    protocol: Protocol
    flow_id: int  # RIPE Atlas "paris_id"
    hops: tuple[Hop, ...]
    reached: bool
    started_at: float  # wall-clock seconds since the epoch
    duration_s: float
    src: str | None = None
    dst_port: int | None = None
    packet_size: int = 0
    stop_reason: str = ""  # "reached", "unreachable", "gap", "max_hops", ...
    # Replies whose quote carries a checksum other than the one sent (agent.trace.session): a middlebox
    # before `rewrite_hop` (the lowest TTL that quoted one) rewrote what the flow hash covers.
    rewritten_replies: int = 0
    rewrite_hop: int | None = None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Border(Record):
    """Where the path crosses into the destination network."""

    hop: int  # TTL of the last upstream hop before the destination (RIPE "hop" numbering)
    address: str
    asn: int | None


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Classification(Record):
    """The upstream tag of one path and the evidence a person can check."""

    upstream: str  # a configured group name, "other" or "unknown"
    border: Border | None = None
    as_path: tuple[int | None, ...] = ()  # collapsed; None marks a stretch of unknown hops
    evidence: tuple[str, ...] = ()
    # HIGH: at least two independent signals agree (AS, name, neighbour hop, configured border); LOW: one
    # signal, or a trace that stopped before the destination; NONE: the tag is unknown.
    confidence: str = "low"


UNKNOWN = "unknown"
OTHER = "other"
HIGH, LOW, NONE = "high", "low", "none"  # Classification.confidence


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Target(Record):
    """One address to probe, with the name its metrics carry (if any)."""

    address: str
    name: str = ""

    @property
    def prefix(self) -> str:
        """The covering /24 (IPv4) or /48 (IPv6), the `prefix` label of every per-target metric.

        >>> Target("175.45.177.10").prefix
        '175.45.177.0/24'
        """
        ip = ipaddress.ip_address(self.address)
        length = 24 if ip.version == 4 else 48
        return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))

    @property
    def label(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class PingResult(Record):
    """One latency probe's outcome; `rtt_s` None means lost."""

    target: str
    protocol: Protocol
    sent_at: float
    rtt_s: float | None
    reply_ttl: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


class Trigger(StrEnum):
    """Why a trace of a target's /24 was asked for at once (the `reason` label of
    nkprobe_retrace_triggers_total): a latency probe's verdict (agent.tracking.LatencyWatch), a
    change of our own network (agent.net.localnet), or of the /24's routing in BGP (agent.bgp.feed)."""

    REPLY_TTL = "reply_ttl"
    RTT_LEVEL = "rtt_level"
    UNREACHABLE = "unreachable"
    LOCAL_NETWORK = "local_network"  # our own default route, source address or link changed
    BGP = "bgp"  # the live BGP view saw a /24's upstreams change or the /24 withdrawn


TRIGGERS: tuple[str, ...] = tuple(t.value for t in Trigger)
