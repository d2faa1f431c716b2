"""The configuration's model: frozen dataclasses with their defaults (README "Configuration"), the
built-in upstream groups, and the pure helpers every layer reads (per-target protocol and port)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from agent.classify.exchanges import DEFAULT_EXCHANGE_PREFIXES
from agent.model import OTHER, UNKNOWN, Target
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
# An allowlist wider than this is no allowlist: it would let a typo probe half the Internet.
MIN_PREFIX_LENGTH = 16
DEFAULT_CONFIG_RESOURCE = "default-config.toml"


@dataclass(frozen=True)
class AgentSection:
    name: str = "nkprobe"
    listen: str = "127.0.0.1:9931"
    state_dir: str = "/var/lib/nkprobe"
    max_pps: float = 20.0
    netns: str = ""  # network namespace for the probe sockets ("" = the current one); --netns overrides
    web_config_file: str = ""  # exporter-toolkit style web config (TLS, basic auth); "" = plain HTTP


@dataclass(frozen=True)
class PingSection:
    interval_s: float = 1.0
    protocols: tuple[str, ...] = ("icmp", "tcp")
    port: int = 80
    timeout_s: float = 2.0


@dataclass(frozen=True)
class TraceSection(TraceSettings):
    """[trace]: how often and toward what each target is traced, and how (`TraceSettings`, whose
    defaults are the section's; `window`, `pace` and `packet_size` are not keys of the file)."""

    interval_s: float = 60.0
    protocol: str = "tcp"
    port: int = 80
    flows: int = 4
    hysteresis: int = 2  # an upstream change is declared after this many consecutive agreeing traces

    def __post_init__(self) -> None:
        # [trace] lookahead defaults to gap_limit, not to the bare session's None (the window alone):
        # a configured trace never sends 16 TTLs at once past a near destination.
        if self.lookahead is None:
            object.__setattr__(self, "lookahead", self.gap_limit)
        TraceSettings.__post_init__(self)


@dataclass(frozen=True)
class AsnSection:
    files: tuple[str, ...] = ()
    sources: tuple[str, ...] = DEFAULT_ASN_SOURCES  # URLs `nkprobe asn update` downloads
    update_dir: str = ""  # where `nkprobe asn update` writes; "" = <agent.state_dir>/asn
    ripestat_url: str = DEFAULT_RIPESTAT_URL  # `nkprobe asn update --ripestat-url` overrides it


@dataclass(frozen=True)
class DestinationSection:
    asn: int = 131279
    prefixes: tuple[str, ...] = ("175.45.176.0/22",)


@dataclass(frozen=True)
class HistorySection:
    retention_days: float = 400.0  # rows older than this are deleted; a year and a bit for yearly views
    prune_interval_s: float = 3600.0  # how often retention runs
    max_pending: int = 10000  # changes kept in memory while the database cannot be written


@dataclass(frozen=True)
class NamesSection:
    reverse_dns: bool = True  # look up hop names (never on the probing path; cached)
    timeout_s: float = 1.0
    suffixes: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_NAME_SUFFIXES))


@dataclass(frozen=True)
class ClassifySection:
    # Exchange-point peering LANs: hops answering from them are passed over (agent/classify/exchanges.py).
    exchange_prefixes: tuple[str, ...] = tuple(DEFAULT_EXCHANGE_PREFIXES)
    # Special-purpose space (RFC 6890) that is routed here, so its hops count like public ones: a test
    # bed's own range. The lab writes ["198.18.0.0/15"] (RFC 2544) into its config; the default is none.
    routed_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BgpSection:
    # RIPEstat looking-glass / asn-neighbours responses saved as JSON (agent/bgp): the control-plane
    # cross-check nkprobe_path_upstream_in_bgp. Read at start and on every reload; () = no cross-check.
    snapshot: tuple[str, ...] = ()


@dataclass(frozen=True)
class TargetOptions:
    """Per-target overrides from a `[[targets]]` table; None means "use the section's value"."""

    protocol: str | None = None  # trace protocol
    port: int | None = None  # destination port of TCP/UDP traces and TCP pings: the host's open port
    ping_protocols: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Config:
    agent: AgentSection = field(default_factory=AgentSection)
    targets: tuple[Target, ...] = ()
    ping: PingSection = field(default_factory=PingSection)
    trace: TraceSection = field(default_factory=TraceSection)
    asn: AsnSection = field(default_factory=AsnSection)
    upstreams: dict[str, tuple[int, ...]] = field(default_factory=lambda: dict(DEFAULT_UPSTREAMS))
    destination: DestinationSection = field(default_factory=DestinationSection)
    source_path: str | None = None  # the file it was loaded from, if any
    history: HistorySection = field(default_factory=HistorySection)
    names: NamesSection = field(default_factory=NamesSection)
    borders: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_BORDERS))
    classify: ClassifySection = field(default_factory=ClassifySection)
    bgp: BgpSection = field(default_factory=BgpSection)
    target_options: dict[str, TargetOptions] = field(default_factory=dict)  # by target address
    warnings: tuple[str, ...] = ()  # legal but probably unintended (e.g. ping alone exceeds max_pps)

    # -- helpers every layer needs; pure ------------------------------------------------------------

    def _options(self, address: str) -> TargetOptions:
        return self.target_options.get(address, TargetOptions())

    def trace_protocol_for(self, address: str) -> str:
        return self._options(address).protocol or self.trace.protocol

    def trace_port_for(self, address: str, protocol: str | None = None) -> int | None:
        """The destination port of a `protocol` trace (default: the target's) to `address`; None: the
        prober's default. TCP: the target's port, else [trace] port (an open port: the SYN must reach a
        listener to be answered). UDP: the target's port, else None, the traceroute base port + 1 of
        agent.trace.flow.DEFAULT_PORT (33435), as `nkprobe trace --protocol udp` has always used;
        [trace] port is TCP's default (80) and a UDP probe there would look like broken HTTP/3. ICMP: None.

        >>> c = Config(trace=TraceSection(port=443))
        >>> c.trace_port_for("175.45.176.71", "tcp"), c.trace_port_for("175.45.176.71", "udp")
        (443, None)
        """
        protocol = protocol or self.trace_protocol_for(address)
        own = self._options(address).port
        if protocol == "tcp":
            return own or self.trace.port
        if protocol == "udp":
            return own
        return None

    def ping_port_for(self, address: str) -> int:
        return self._options(address).port or self.ping.port

    def ping_protocols_for(self, address: str) -> tuple[str, ...]:
        return self._options(address).ping_protocols or self.ping.protocols

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
