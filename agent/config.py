"""Configuration: frozen dataclasses with defaults (CONTRACT.md "Configuration").

The shapes below are the interface every layer reads. Loading and validation (`load_config`) turn a TOML
file into a `Config`, reporting every problem by key path, and reject unknown keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.model import Target

DEFAULT_UPSTREAMS: dict[str, tuple[int, ...]] = {
    # DOMAIN.md: China Unicom AS4837 and sisters AS9929, AS10099; the 2026 hand-off via AS134544.
    "china_unicom": (4837, 9929, 10099, 134544),
    # DOMAIN.md: TransTeleCom since 2017-10-01.
    "transtelecom": (20485,),
}


@dataclass(frozen=True)
class AgentSection:
    name: str = "nkprobe"
    listen: str = "127.0.0.1:9931"
    state_dir: str = "/var/lib/nkprobe"
    max_pps: float = 20.0


@dataclass(frozen=True)
class PingSection:
    interval_s: float = 1.0
    protocols: tuple[str, ...] = ("icmp", "tcp")
    port: int = 80
    timeout_s: float = 2.0


@dataclass(frozen=True)
class TraceSection:
    interval_s: float = 60.0
    protocol: str = "tcp"
    port: int = 80
    flows: int = 4
    max_hops: int = 32
    timeout_s: float = 2.0
    grace_s: float = 0.5
    retries: int = 1
    gap_limit: int = 5


@dataclass(frozen=True)
class AsnSection:
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class DestinationSection:
    asn: int = 131279
    prefixes: tuple[str, ...] = ("175.45.176.0/22",)


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
