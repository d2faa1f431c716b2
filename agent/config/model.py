"""The configuration's model: frozen dataclasses whose fields declare the keys of the file, each with its
default, type and bounds (agent.config.keys; README "Configuration"), the built-in upstream groups, and
the record of each target with everything its probes need."""

from __future__ import annotations

import os
from dataclasses import field, replace
from typing import ClassVar

from agent.classify.exchanges import DEFAULT_EXCHANGE_PREFIXES
from agent.config import checks
from agent.config.keys import (
    Integer,
    Key,
    Number,
    flag,
    groups,
    integer,
    items,
    number,
    required,
    section,
    tables,
    text,
)
from agent.model import OTHER, UNKNOWN, Record, Target, record
from agent.trace.settings import TraceSettings

DEFAULT_UPSTREAMS: dict[str, tuple[int, ...]] = {
    # China Unicom AS4837 and sisters AS9929, AS10099; the 2026 hand-off via AS134544 (RIPEstat
    # asn-neighbours of AS131279, tests/fixtures/bgp).
    "china_unicom": (4837, 9929, 10099, 134544),
    # TransTeleCom since 2017-10-01 (README, first section).
    "transtelecom": (20485,),
}

# Reverse-DNS suffixes that are evidence for a group (the routers' PTR records, tests/fixtures/ripe).
# Suffixes, never substrings: NTT's `trans-telecom-0...gin.ntt.net` faces TTK but is NTT's.
DEFAULT_NAME_SUFFIXES: dict[str, tuple[str, ...]] = {
    "china_unicom": ("chinaunicomglobal.com", "chinaunicom.cn"),
    "transtelecom": ("transtelecom.net", "zsttk.ru"),
}

# Last upstream hops seen before AS131279 in December 2025 (tests/fixtures/ripe). 103.35.255.254 is
# unannounced, so longest-prefix match alone cannot place it: the config names it.
DEFAULT_BORDERS: dict[str, tuple[str, ...]] = {
    "china_unicom": ("103.35.255.254",),
    "transtelecom": ("188.43.225.153",),
}

# iptoasn.com publishes this table hourly, public domain (https://iptoasn.com).
DEFAULT_ASN_SOURCES: tuple[str, ...] = ("https://iptoasn.com/data/ip2asn-v4.tsv.gz",)
# RIPEstat data API base (https://stat.ripe.net/docs/data_api): `nkprobe asn update` asks it for the
# prefixes each configured AS announces.
DEFAULT_RIPESTAT_URL = "https://stat.ripe.net"

RESERVED_GROUPS = (OTHER, UNKNOWN)
PING_PROTOCOLS = ("icmp", "tcp")
TRACE_PROTOCOLS = ("icmp", "udp", "tcp")
MAX_PPS = 1000.0
DEFAULT_CONFIG_RESOURCE = "default-config.toml"
PORT = {"ge": 1, "le": 65535}  # the bounds of a TCP or UDP port: integer(80, **PORT)
DAY_S = 86400.0


@record
class AgentSection(Record):
    """[agent]: who this agent is, where it serves /metrics and keeps its state, its packet budget."""

    name: str = text("nkprobe", nonempty=True)
    listen: str = text("127.0.0.1:9931", nonempty=True, check=checks.listen_address)
    state_dir: str = text("/var/lib/nkprobe", nonempty=True, path=True)
    max_pps: float = number(20.0, gt=0, le=MAX_PPS)
    # The network namespace of the probe sockets ("" = the current one); --netns overrides it.
    netns: str = text("", check=checks.netns_name)
    # An exporter-toolkit style web config (TLS, basic auth); "" = plain HTTP.
    web_config_file: str = text("", path=True)
    # Who to tell when this agent needs attention: an e-mail address the central Alertmanager sends
    # this agent's alerts to (deploy/README.md "Alerts"); exported as nkprobe_agent_info{owner}.
    # "" = the operators.
    owner: str = text("", check=checks.owner_address)


@record
class PingSection(Record):
    """[ping]: the latency probes of every target (a [[targets]] entry may override protocols and port)."""

    interval_s: float = number(1.0, gt=0, le=DAY_S)
    protocols: tuple[str, ...] = items(("icmp", "tcp"), checks.one_of(PING_PROTOCOLS), nonempty=True)
    port: int = integer(80, **PORT)
    timeout_s: float = number(2.0, gt=0, le=60)


@record
class TraceSection(TraceSettings):
    """[trace]: how often and toward what each target is traced, and how (`TraceSettings`, whose
    defaults are the section's; `window`, `pace` and `packet_size` are not keys of the file)."""

    # false: latency probes only (a census of many targets); triggers then only count.
    enabled: bool = flag(True)
    interval_s: float = number(60.0, gt=0, le=DAY_S)
    protocol: str = text("tcp", check=checks.one_of(TRACE_PROTOCOLS))
    port: int = integer(80, **PORT)
    # Paris flow identifiers: enough for MDA-like coverage of a few per-flow balancers, bounded so a
    # round stays within the packet budget.
    flows: int = integer(4, ge=1, le=64)
    # An upstream change is declared after this many consecutive agreeing traces.
    hysteresis: int = integer(2, ge=1, le=100)

    # The keys this section shares with every trace: TraceSettings (agent/trace/settings.py) declares
    # them with their defaults; here is what a file may set them to. The rules between them are
    # agent.config.rules.trace_stops.
    inherited_keys: ClassVar[dict[str, Key]] = {
        "max_hops": Integer(ge=1, le=255),
        "timeout_s": Number(gt=0, le=60),
        "near_factor": Number(gt=0, le=100),
        "silent_min_s": Number(gt=0, le=60),
        "silent_max_s": Number(gt=0, le=60),
        "grace_s": Number(ge=0, le=60),
        "retries": Integer(ge=0, le=10),
        "gap_limit": Integer(ge=1, le=255),
        "lookahead": Integer(ge=1, le=255),
    }

    def __post_init__(self) -> None:
        # [trace] lookahead defaults to gap_limit, not to the bare session's None (the window alone):
        # a configured trace never sends 16 TTLs at once past a near destination.
        if self.lookahead is None:
            object.__setattr__(self, "lookahead", self.gap_limit)
        TraceSettings.__post_init__(self)


@record
class AsnSection(Record):
    """[asn]: the IP-to-AS files the hops are tagged with, and where `nkprobe asn update` gets them."""

    files: tuple[str, ...] = items((), checks.text, path=True)
    # URLs `nkprobe asn update` downloads.
    sources: tuple[str, ...] = items(DEFAULT_ASN_SOURCES, checks.download_url)
    # Where `nkprobe asn update` writes; "" = <agent.state_dir>/asn.
    update_dir: str = text("", path=True)
    # `nkprobe asn update --ripestat-url` overrides it.
    ripestat_url: str = text(DEFAULT_RIPESTAT_URL, check=checks.api_url)


@record
class DestinationSection(Record):
    """[destination]: the AS and prefixes measured, which are also the allowlist of every probe."""

    asn: int = integer(131279, ge=1, le=checks.ASN_MAX)
    # Also the allowlist: the agent never probes outside it (rules: disjoint).
    prefixes: tuple[str, ...] = items(("175.45.176.0/22",), checks.allowlist_prefix, nonempty=True)


@record
class HistorySection(Record):
    """[history]: how long the recorded upstream changes are kept (agent.history)."""

    # Rows older than this are deleted; a year and a bit for yearly views.
    retention_days: float = number(400.0, gt=0, le=36500)
    prune_interval_s: float = number(3600.0, gt=0, le=7 * DAY_S)  # how often retention runs
    # Changes kept in memory while the database cannot be written.
    max_pending: int = integer(10000, ge=1, le=1_000_000)


@record
class NamesSection(Record):
    """[names]: reverse names of the hops, and the name suffixes that are evidence for a group."""

    reverse_dns: bool = flag(True)  # look up hop names (never on the probing path; cached)
    timeout_s: float = number(1.0, gt=0, le=30)
    suffixes: dict[str, tuple[str, ...]] = groups(
        DEFAULT_NAME_SUFFIXES, checks.name_suffix, what="a name suffix", upstream=True
    )


@record
class ClassifySection(Record):
    """[classify]: the address ranges the classifier passes over or counts as routed."""

    # Exchange-point peering LANs: hops answering from them are passed over (agent/classify/exchanges.py).
    exchange_prefixes: tuple[str, ...] = items(tuple(DEFAULT_EXCHANGE_PREFIXES), checks.exchange_lan)
    # Special-purpose space (RFC 6890) that is routed here, so its hops count like public ones: a test
    # bed's own range. The lab writes ["198.18.0.0/15"] (RFC 2544) into its config; the default is none.
    routed_prefixes: tuple[str, ...] = items((), checks.routed_prefix)


@record
class BgpSection(Record):
    """[bgp]: the control-plane view (saved RIPEstat files, RIPEstat and RIS Live) beside the traces."""

    # RIPEstat looking-glass / asn-neighbours responses saved as JSON (agent/bgp): the control-plane
    # cross-check nkprobe_path_upstream_in_bgp. Read at start and on every reload; () = no cross-check.
    snapshot: tuple[str, ...] = items((), checks.text, path=True)
    # The live view (agent/bgp/live.py, feed.py): RIPEstat state every refresh_s, RIS Live updates
    # between. On by default; the lab's config and every test turn it off or point it at a local server.
    live: bool = flag(True)
    ris_live_url: str = text("wss://ris-live.ripe.net/v1/ws/", check=checks.websocket_url)
    ripestat_url: str = text("https://stat.ripe.net/data/", check=checks.api_url)
    refresh_s: float = number(3600.0, ge=1.0)
    stall_s: float = number(60.0, ge=0.5)  # nothing from RIS Live (not even a pong) this long: reconnect


@record
class TargetEntry(Record):
    """One [[targets]] table as written; None: the section's value. Resolved into a `TargetConfig`."""

    address: str = required(checks.ipv4, missing="missing; every target needs an address")
    name: str = text("")
    protocol: str | None = text(None, check=checks.one_of(TRACE_PROTOCOLS))  # of its traces
    # The destination port of TCP/UDP traces and TCP pings: the host's open port.
    port: int | None = integer(None, **PORT)
    ping_protocols: tuple[str, ...] | None = items(None, checks.one_of(PING_PROTOCOLS), nonempty=True)

    def resolve(self, ping: PingSection, trace: TraceSection) -> TargetConfig:
        """The record of this target: its own values, else the sections'."""
        protocol = self.protocol or trace.protocol
        return TargetConfig(
            self.address,
            self.name,
            ping_protocols=self.ping_protocols or ping.protocols,
            ping_port=self.port or ping.port,
            trace_protocol=protocol,
            trace_port=trace_port(protocol, self.port, trace.port),
            entry=self,
        )


def trace_port(protocol: str, own: int | None, section_port: int) -> int | None:
    """The destination port of a `protocol` trace to a target whose own port is `own`; None: the
    prober's default. TCP: the target's port, else [trace] port (an open port: the SYN must reach a
    listener to be answered). UDP: the target's port, else None, the traceroute base port + 1 of
    agent.trace.flow.DEFAULT_PORT (33435), as `nkprobe trace --protocol udp` has always used; [trace]
    port is TCP's default (80) and a UDP probe there would look like broken HTTP/3. ICMP: None.

    >>> trace_port("tcp", None, 443), trace_port("udp", None, 443), trace_port("udp", 53, 443)
    (443, None, 53)
    """
    if protocol == "tcp":
        return own or section_port
    if protocol == "udp":
        return own
    return None


@record(slots=True, kw_only=True)
class TargetConfig(Target):
    """A target with everything its probes need, resolved once from its [[targets]] entry and the
    [ping] and [trace] sections (`TargetEntry.resolve`) when its Config is made."""

    ping_protocols: tuple[str, ...]
    ping_port: int  # of TCP pings
    trace_protocol: str
    trace_port: int | None  # None: the prober's default (`trace_port`)
    # What it was resolved from: a Config made from another one with other [ping] or [trace] sections
    # (dataclasses.replace) resolves it afresh, and `nkprobe trace --protocol` by another protocol.
    entry: TargetEntry = field(compare=False, repr=False)


@record
class Config(Record):
    """A whole config file, validated (`load_config`), or one made in code; its targets resolved."""

    agent: AgentSection = section(AgentSection)
    # Code that builds a Config may give plain `Target`s or `TargetEntry`s: `__post_init__` resolves them.
    targets: tuple[TargetConfig, ...] = tables(
        TargetEntry,
        not_list='must be an array of tables: [[targets]] address = "..."',
        not_table="must be a table with an address",
    )
    ping: PingSection = section(PingSection)
    trace: TraceSection = section(TraceSection)
    asn: AsnSection = section(AsnSection)
    upstreams: dict[str, tuple[int, ...]] = groups(
        DEFAULT_UPSTREAMS,
        checks.asn,
        what="an ASN",
        empty="must name at least one group, e.g. transtelecom = [20485]",
    )
    destination: DestinationSection = section(DestinationSection)
    source_path: str | None = None  # the file it was loaded from, if any
    history: HistorySection = section(HistorySection)
    names: NamesSection = section(NamesSection)
    borders: dict[str, tuple[str, ...]] = groups(
        DEFAULT_BORDERS, checks.ipv4, what="an IPv4 address", upstream=True
    )
    classify: ClassifySection = section(ClassifySection)
    bgp: BgpSection = section(BgpSection)
    warnings: tuple[str, ...] = ()  # legal but probably unintended (e.g. ping alone exceeds max_pps)

    def __post_init__(self) -> None:
        given: tuple[Target | TargetEntry, ...] = self.targets
        resolved = tuple(_entry(t).resolve(self.ping, self.trace) for t in given)
        object.__setattr__(self, "targets", resolved)

    def target(self, address: str, *, trace_protocol: str | None = None) -> TargetConfig:
        """The record of `address`: its [[targets]] entry's, or the sections' for an address the file
        does not list (`nkprobe trace ADDRESS`); `trace_protocol` (`--protocol`) traces it by that
        protocol instead, to its port for that protocol.

        >>> c = Config(trace=TraceSection(port=443))
        >>> c.target("175.45.176.71").trace_port, c.target("175.45.176.71", trace_protocol="udp").trace_port
        (443, None)
        """
        record = next((t for t in self.targets if t.address == address), None)
        if record is not None and trace_protocol in (None, record.trace_protocol):
            return record
        entry = record.entry if record is not None else TargetEntry(address)
        return replace(entry, protocol=trace_protocol or entry.protocol).resolve(self.ping, self.trace)

    def group_of_asn(self, asn: int) -> str | None:
        """The upstream group holding `asn`, if any.

        >>> Config().group_of_asn(20485), Config().group_of_asn(3356)
        ('transtelecom', None)
        """
        for group, asns in self.upstreams.items():
            if asn in asns:
                return group
        return None

    @property
    def asn_update_dir(self) -> str:
        return self.asn.update_dir or os.path.join(self.agent.state_dir, "asn")


def _entry(target: Target | TargetEntry) -> TargetEntry:
    """What a target given to a Config is resolved from: a plain `Target` has no values of its own."""
    if isinstance(target, TargetConfig):
        return target.entry
    return target if isinstance(target, TargetEntry) else TargetEntry(target.address, target.name)
