"""Lab scenarios: per-link one-way delay, jitter and loss from a TOML file (see default.toml).

Validation reports every problem by its key path (`links.isp-cu1.delay_ms: must be >= 0`) and rejects
unknown keys, so a typo never silently leaves a link undelayed.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.lab.topology import LINK_NAMES, PLAIN, UPSTREAMS, Options

DEFAULT_SCENARIO = "default.toml"
_LINK_KEYS = ("delay_ms", "jitter_ms", "loss_pct")
# [lab] keys besides flip_start: the Options of a real home network (all off by default).
_BOOL_OPTIONS = ("nat", "nat_random", "cgnat", "rate_limit")
_INT_OPTIONS = {"icmp_ratelimit_ms": (0, 60_000), "icmp_msgs_per_sec": (1, 1_000_000)}
_LAB_KEYS = ("flip_start", *_BOOL_OPTIONS, *_INT_OPTIONS)


@dataclass(frozen=True)
class LinkParams:
    """One delay link: the same one-way delay, jitter and loss in both directions."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0


@dataclass(frozen=True)
class Scenario:
    links: dict[str, LinkParams] = field(default_factory=dict)  # only links that carry a delay link
    flip_start: str = "china_unicom"
    source: str = "<built-in>"
    options: Options = PLAIN  # NAT, CGNAT, ICMP rate limits ([lab] keys, or `lab up --nat ...`)

    def one_way_ms(self, link_name: str) -> float:
        params = self.links.get(link_name)
        return params.delay_ms if params else 0.0


def _number(value: Any, key: str, problems: list[str], low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{key}: must be a number, not {type(value).__name__}")
        return 0.0
    number = float(value)
    if not math.isfinite(number):
        problems.append(f"{key}: must be a finite number")
        return 0.0
    if number < low:
        problems.append(f"{key}: must be >= {low:g}")
    elif high is not None and number > high:
        problems.append(f"{key}: must be <= {high:g}")
    return number


def parse(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Validate a decoded TOML document. Raises ConfigError listing every problem.

    >>> parse({"links": {"isp-cu1": {"delay_ms": 5}}}).links["isp-cu1"].delay_ms
    5.0
    """
    problems: list[str] = []
    for key in data:
        if key not in ("lab", "links"):
            problems.append(f"{key}: unknown section (known: lab, links)")
    lab = data.get("lab", {})
    flip_start = "china_unicom"
    flags: dict[str, bool] = {}
    numbers: dict[str, int] = {}
    if not isinstance(lab, dict):
        problems.append("lab: must be a table")
    else:
        for key, value in lab.items():
            if key not in _LAB_KEYS:
                problems.append(f"lab.{key}: unknown key (known: {', '.join(_LAB_KEYS)})")
            elif key in _BOOL_OPTIONS:
                if isinstance(value, bool):
                    flags[key] = value
                else:
                    problems.append(f"lab.{key}: must be true or false, not {value!r}")
            elif key in _INT_OPTIONS:
                low, high = _INT_OPTIONS[key]
                if isinstance(value, bool) or not isinstance(value, int):
                    problems.append(f"lab.{key}: must be an integer, not {value!r}")
                elif not low <= value <= high:
                    problems.append(f"lab.{key}: must be {low}..{high}, not {value}")
                else:
                    numbers[key] = value
            elif value not in UPSTREAMS:
                problems.append(f"lab.flip_start: must be one of {', '.join(UPSTREAMS)}, not {value!r}")
            else:
                flip_start = value
        if flags.get("nat_random") and not flags.get("nat"):
            problems.append("lab.nat_random: needs nat = true")
    links: dict[str, LinkParams] = {}
    raw_links = data.get("links", {})
    if not isinstance(raw_links, dict):
        problems.append("links: must be a table of links")
        raw_links = {}
    for name, raw in raw_links.items():
        where = f"links.{name}"
        if name not in LINK_NAMES:
            problems.append(f"{where}: unknown link (known: {', '.join(LINK_NAMES)})")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table with {', '.join(_LINK_KEYS)}")
            continue
        for key in raw:
            if key not in _LINK_KEYS:
                problems.append(f"{where}.{key}: unknown key (known: {', '.join(_LINK_KEYS)})")
        delay = _number(raw.get("delay_ms", 0.0), f"{where}.delay_ms", problems, 0.0, 10_000.0)
        jitter = _number(raw.get("jitter_ms", 0.0), f"{where}.jitter_ms", problems, 0.0, 10_000.0)
        loss = _number(raw.get("loss_pct", 0.0), f"{where}.loss_pct", problems, 0.0, 100.0)
        if jitter > delay >= 0:
            problems.append(f"{where}.jitter_ms: must be <= delay_ms ({delay:g})")
        links[name] = LinkParams(delay, jitter, loss)
    if problems:
        raise ConfigError(
            f"{source}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            tuple(problems),
        )
    options = Options(
        nat=flags.get("nat", False),
        nat_random=flags.get("nat_random", False),
        cgnat=flags.get("cgnat", False),
        rate_limit=flags.get("rate_limit", False),
        icmp_ratelimit_ms=numbers.get("icmp_ratelimit_ms", PLAIN.icmp_ratelimit_ms),
        icmp_msgs_per_sec=numbers.get("icmp_msgs_per_sec", PLAIN.icmp_msgs_per_sec),
    )
    return Scenario(links=links, flip_start=flip_start, source=source, options=options)


def with_home_network(sc: Scenario) -> Scenario:
    """`sc` with NAT, CGNAT and ICMP rate limits on: a volunteer's network (`lab up --home`, the demo).

    >>> o = with_home_network(Scenario()).options
    >>> (o.nat, o.cgnat, o.rate_limit, o.nat_random)
    (True, True, True, False)
    """
    opts = dataclasses.replace(sc.options, nat=True, cgnat=True, rate_limit=True)
    return dataclasses.replace(sc, options=opts)


def loads(text: str, source: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}; fix the file") from exc
    return parse(data, source)


def load(path: str | Path | None = None) -> Scenario:
    """Read a scenario file, or the built-in default when `path` is None."""
    if path is None:
        text = resources.files("agent.lab").joinpath(DEFAULT_SCENARIO).read_text(encoding="utf-8")
        return loads(text, f"<built-in {DEFAULT_SCENARIO}>")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc.strerror}; pass a readable TOML file") from exc
    return loads(text, str(path))
