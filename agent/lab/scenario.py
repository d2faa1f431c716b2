"""Lab scenarios: per-link one-way delay, jitter and loss from a TOML file (see default.toml).

Validation reports every problem by its key path (`links.isp-cu1.delay_ms: must be >= 0`) and rejects
unknown keys, so a typo never silently leaves a link undelayed.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.lab.topology import LINK_NAMES, UPSTREAMS

DEFAULT_SCENARIO = "default.toml"
_LINK_KEYS = ("delay_ms", "jitter_ms", "loss_pct")


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
    if not isinstance(lab, dict):
        problems.append("lab: must be a table")
    else:
        for key, value in lab.items():
            if key != "flip_start":
                problems.append(f"lab.{key}: unknown key (known: flip_start)")
            elif value not in UPSTREAMS:
                problems.append(f"lab.flip_start: must be one of {', '.join(UPSTREAMS)}, not {value!r}")
            else:
                flip_start = value
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
    return Scenario(links=links, flip_start=flip_start, source=source)


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
