"""What a running lab looks like, for tests and tools: `load()` reads the lab.json that `lab up` wrote.

    from agent.lab import info
    lab = info.load()                       # NKPROBE_LAB_PREFIX or "nkp-"
    lab.vantage_ns                          # "nkp-vp": run probes with `ip netns exec` in here
    lab.config_file, lab.asn_file           # a ready agent config and the lab's prefix2as table
    p = lab.prefixes["198.19.177.0/24"]
    p.role, p.echo_host, p.quiet_host       # "transtelecom", "198.19.177.10", "198.19.177.20"
    p.hops["transtelecom"]                  # traceroute -n hop list to .10, None for the silent hop
    p.rtt_ms["transtelecom"]                # configured round trip to the hosts
    lab.current_upstreams("198.19.179.10")  # ("china_unicom",) until `lab flip transtelecom`

Reading is pure file I/O (no root, no netlink), so it is cheap to call before every test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.errors import LabError, UsageError
from agent.lab import topology

RUN_DIR = Path("/run/nkprobe-lab")
DEFAULT_PREFIX = "nkp-"
PREFIX_ENV = "NKPROBE_LAB_PREFIX"
# README "The lab": lab namespaces begin with "nkp-", and `lab down` deletes every namespace that begins with
# the prefix, so a prefix without "nkp-" ("x") could take other programs' namespaces ("xvp", "xisp") with it.
# 16 characters at most: interface names built from it must fit IFNAMSIZ (15) with a short suffix.
_PREFIX_RE = re.compile(r"nkp-[a-z0-9-]{0,12}")


def resolve_prefix(prefix: str | None = None) -> str:
    """The lab prefix: the argument, else $NKPROBE_LAB_PREFIX, else "nkp-".

    >>> resolve_prefix("nkp-x3-")
    'nkp-x3-'
    >>> resolve_prefix("x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    agent.errors.UsageError: bad lab prefix 'x': it must begin with 'nkp-', ...
    """
    value = prefix if prefix is not None else os.environ.get(PREFIX_ENV) or DEFAULT_PREFIX
    if not _PREFIX_RE.fullmatch(value):
        raise UsageError(
            f"bad lab prefix {value!r}: it must begin with 'nkp-', then at most 12 lower-case letters, "
            "digits or '-', e.g. NKPROBE_LAB_PREFIX=nkp-x3-"
        )
    return value


def state_dir(prefix: str) -> Path:
    """Where a lab keeps its files and pids.

    >>> state_dir("nkp-")
    PosixPath('/run/nkprobe-lab/nkp')
    """
    return RUN_DIR / (prefix.rstrip("-") or prefix)


@dataclass(frozen=True)
class PrefixInfo:
    """One destination /24 of the lab."""

    prefix: str  # "198.19.176.0/24"
    role: str  # "china_unicom", "transtelecom", "split" (per-flow multipath) or "flip"
    upstreams: tuple[str, ...]  # upstreams it can be reached through
    echo_host: str  # .10: answers ICMP echo and TCP 80
    quiet_host: str  # .20: sends no ICMP, accepts TCP 80
    hops: dict[str, tuple[str | None, ...]]  # upstream -> traceroute -n hops to .10 (None: silent)
    rtt_ms: dict[str, float]  # upstream -> configured round trip to the hosts


@dataclass(frozen=True)
class LinkInfo:
    name: str
    a_ns: str
    b_ns: str
    a_addr: str
    b_addr: str
    delayed: bool  # a delay link (wire or netem) rather than a plain veth pair
    delay_ms: float
    jitter_ms: float
    loss_pct: float


@dataclass(frozen=True)
class LabInfo:
    prefix: str
    state_dir: Path
    vantage_ns: str
    vantage_address: str
    namespaces: tuple[str, ...]
    wire_ns: str
    asn_file: Path
    config_file: Path
    lab_json: Path
    delay_backend: str  # "wire" (userspace helper) or "netem"
    flip: str  # the upstream 198.19.179.0/24 uses now
    prefixes: dict[str, PrefixInfo]
    links: dict[str, LinkInfo]
    scenario: str  # where the delays came from
    options: topology.Options = topology.PLAIN  # NAT, CGNAT, ICMP rate limits

    @property
    def public_address(self) -> str:
        """The vantage's address as the lab beyond its NATs sees it (its own address without NAT)."""
        return self.options.public_address

    def prefix_of(self, address: str) -> PrefixInfo:
        addr = ipaddress.ip_address(address)
        for info in self.prefixes.values():
            if addr in ipaddress.ip_network(info.prefix):
                return info
        raise LabError(f"{address} is not a lab destination; use a host of {topology.DESTINATION}")

    def current_upstreams(self, address_or_prefix: str) -> tuple[str, ...]:
        """Upstreams traffic to this /24 may use right now (two for the per-flow split /24)."""
        info = self.prefix_of(address_or_prefix.split("/", maxsplit=1)[0])
        if info.role == "flip":
            return (self.flip,)
        return info.upstreams

    def expected_hops(self, address: str, upstream: str) -> tuple[str | None, ...]:
        """traceroute -n hops to any lab host (the last hop is the host itself)."""
        hops = self.prefix_of(address).hops[upstream]
        return (*hops[:-1], address)

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(a for p in self.prefixes.values() for a in (p.echo_host, p.quiet_host))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "prefix": self.prefix,
            "state_dir": str(self.state_dir),
            "vantage_ns": self.vantage_ns,
            "vantage_address": self.vantage_address,
            "namespaces": list(self.namespaces),
            "wire_ns": self.wire_ns,
            "files": {
                "asn": str(self.asn_file),
                "config": str(self.config_file),
                "lab_json": str(self.lab_json),
            },
            "delay_backend": self.delay_backend,
            "flip": self.flip,
            "scenario": self.scenario,
            "options": asdict(self.options),
            "public_address": self.public_address,
            "prefixes": {
                p.prefix: {
                    "role": p.role,
                    "upstreams": list(p.upstreams),
                    "hosts": {"echo": p.echo_host, "quiet": p.quiet_host},
                    "hops": {up: list(h) for up, h in p.hops.items()},
                    "rtt_ms": p.rtt_ms,
                }
                for p in self.prefixes.values()
            },
            "links": {
                lk.name: {
                    "a_ns": lk.a_ns,
                    "b_ns": lk.b_ns,
                    "a_addr": lk.a_addr,
                    "b_addr": lk.b_addr,
                    "delayed": lk.delayed,
                    "delay_ms": lk.delay_ms,
                    "jitter_ms": lk.jitter_ms,
                    "loss_pct": lk.loss_pct,
                }
                for lk in self.links.values()
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabInfo:
        files = data["files"]
        return cls(
            prefix=data["prefix"],
            state_dir=Path(data["state_dir"]),
            vantage_ns=data["vantage_ns"],
            vantage_address=data["vantage_address"],
            namespaces=tuple(data["namespaces"]),
            wire_ns=data["wire_ns"],
            asn_file=Path(files["asn"]),
            config_file=Path(files["config"]),
            lab_json=Path(files["lab_json"]),
            delay_backend=data["delay_backend"],
            flip=data["flip"],
            scenario=data["scenario"],
            prefixes={
                name: PrefixInfo(
                    prefix=name,
                    role=p["role"],
                    upstreams=tuple(p["upstreams"]),
                    echo_host=p["hosts"]["echo"],
                    quiet_host=p["hosts"]["quiet"],
                    hops={up: tuple(h) for up, h in p["hops"].items()},
                    rtt_ms={up: float(v) for up, v in p["rtt_ms"].items()},
                )
                for name, p in data["prefixes"].items()
            },
            links={name: LinkInfo(name=name, **lk) for name, lk in data["links"].items()},
            options=topology.Options(**data.get("options", {})),
        )


def load(prefix: str | None = None) -> LabInfo:
    """The running lab with this prefix (default: $NKPROBE_LAB_PREFIX or "nkp-").

    Raises LabError when that lab is not up, so callers fail closed instead of probing elsewhere.
    """
    prefix = resolve_prefix(prefix)
    path = state_dir(prefix) / "lab.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LabError(f"lab {prefix!r} is not up ({path} missing); run `nkprobe lab up`") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {path}: {exc}; run `nkprobe lab down` then `nkprobe lab up`") from exc
    return LabInfo.from_json(data)
