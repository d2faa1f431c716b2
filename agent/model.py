"""Immutable value types shared by every layer: probing, classification, history and export.

Everything here is plain data (frozen dataclasses and one NamedTuple, no I/O). Addresses are kept as
text so the types stay family-neutral; the layers that need arithmetic parse them with `ipaddress`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, dataclass, field, fields
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple, TypeVar, dataclass_transform, overload


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
    """The methods of a frozen dataclass, written once for all that use it, rather than compiled anew for
    every class at every start (Python 3.11: about 0.1 ms a method, and `nkprobe trace` loads some thirty
    classes before its first probe, bench/startup.py); these are compiled once, into the module's
    bytecode.

    - Equality, hash and repr, for a class declared `@dataclass(frozen=True, eq=False, repr=False)` on
      this base: equal to another of its class with equal compared fields, hashed by them, shown by the
      fields whose `repr` is true.
    - `__init__` and frozenness too, for a class declared `@record` (below).

    For values that are not made, hashed or compared on a per-packet path: these are slower per call
    than generated ones (a few microseconds; the receive path matches replies by plain tuples,
    agent.trace.registry, and a reply or a latency result keeps a generated `__init__`)."""

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The `__init__` a frozen dataclass would generate for the class's fields: positional fields in
        order, then keyword-only ones, defaults and default factories, `__post_init__` last."""
        plan = _INIT_PLANS.get(self.__class__) or _init_plan(self.__class__)
        if len(args) > plan.positional:
            raise TypeError(f"{plan.name}() takes {plan.positional} positional arguments, {len(args)} given")
        set_field = object.__setattr__
        missing = []
        taken = 0
        for i, (name, default, factory) in enumerate(plan.init):
            if i < len(args):
                if name in kwargs:
                    raise TypeError(f"{plan.name}() got multiple values for argument {name!r}")
                value = args[i]
            elif name in kwargs:
                value = kwargs[name]
                taken += 1
            elif default is not MISSING:
                value = default
            elif factory is not MISSING:
                value = factory()
            else:
                missing.append(name)
                continue
            set_field(self, name, value)
        if missing:
            raise TypeError(f"{plan.name}() missing required arguments: {', '.join(map(repr, missing))}")
        if taken != len(kwargs):
            unknown = ", ".join(map(repr, sorted(set(kwargs) - {name for name, _, _ in plan.init})))
            raise TypeError(f"{plan.name}() got unexpected keyword arguments: {unknown}")
        for name, default, factory in plan.derived:
            set_field(self, name, default if factory is MISSING else factory())
        if plan.post_init:
            self.__post_init__()  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")


class _InitPlan(NamedTuple):
    """What `Record.__init__` does for one class, worked out at its first instance."""

    name: str
    positional: int  # how many of `init` may be given by position
    init: tuple[tuple[str, Any, Any], ...]  # (name, default, default factory), positional ones first
    derived: tuple[tuple[str, Any, Any], ...]  # fields not in __init__ that have a default or factory
    post_init: bool


_INIT_PLANS: dict[type, _InitPlan] = {}


def _init_plan(cls: type) -> _InitPlan:
    declared = fields(cls)
    given = [f for f in declared if f.init]
    positional = [f for f in given if not f.kw_only]
    ordered = positional + [f for f in given if f.kw_only]  # dataclasses' order (kw_only fields last)
    derived = [
        f for f in declared if not f.init and (f.default is not MISSING or f.default_factory is not MISSING)
    ]
    plan = _InitPlan(
        cls.__qualname__,
        len(positional),
        tuple((f.name, f.default, f.default_factory) for f in ordered),
        tuple((f.name, f.default, f.default_factory) for f in derived),
        hasattr(cls, "__post_init__"),
    )
    _INIT_PLANS[cls] = plan
    return plan


_T = TypeVar("_T", bound=Record)


@overload
def record(cls: type[_T], /) -> type[_T]: ...
@overload
def record(*, slots: bool = False, kw_only: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(
    cls: type[_T] | None = None, /, *, slots: bool = False, kw_only: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """A frozen dataclass on `Record` whose `__init__`, `__setattr__` and `__delattr__` are Record's
    too, for values made a few times per run, not per packet (config sections, trace settings, a trace's
    Path). `@dataclass` compiles those three anew for every class at every start: about 0.3 ms a class
    (Python 3.11), and `nkprobe trace` loads some thirty before its first probe (bench/startup.py).
    `fields`, `replace`, `asdict`, `field(default_factory=..., init=False)` and `__post_init__` work
    as with `@dataclass(frozen=True)`; Record's `__init__` costs a few microseconds more a call.
    A chain of dataclasses is all `@record` or all `@dataclass` (dataclasses refuses to mix frozen and
    not frozen, which is what a `@record` is to it)."""

    def make(c: type[_T]) -> type[_T]:
        if not issubclass(c, Record):
            raise TypeError(f"@record needs a subclass of Record, not {c.__qualname__}")
        return dataclass(c, init=False, repr=False, eq=False, slots=slots, kw_only=kw_only)

    return make if cls is None else make(cls)


@record(slots=True)
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


@record(slots=True)
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


@record(slots=True)
class Border(Record):
    """Where the path crosses into the destination network."""

    hop: int  # TTL of the last upstream hop before the destination (RIPE "hop" numbering)
    address: str
    asn: int | None


@record(slots=True)
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


@record(slots=True)
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
