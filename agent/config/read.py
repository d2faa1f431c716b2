"""Reading a config: the TOML file (or the shipped default) to a validated `Config`, or one ConfigError
listing every problem."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agent.config import rules
from agent.config.keys import Nested, keys_of
from agent.config.model import DEFAULT_CONFIG_RESOURCE, Config
from agent.config.sections import Reader
from agent.errors import ConfigError

# Problems are listed section by section in this order, each section's own before those between its
# keys and other sections' (agent.config.rules): [destination] before what must lie outside it, and
# [[targets]], which refer to every other section, last, entry by entry.
LISTING_ORDER = (
    "agent",
    "ping",
    "trace",
    "asn",
    "destination",
    "upstreams",
    "history",
    "names",
    "borders",
    "classify",
    "bgp",
    "targets",
)


def load_config(path: str | None) -> Config:
    """Read and validate a TOML config; None loads the shipped default (agent/data/default-config.toml).

    Raises ConfigError with every problem (`problems`), and a one-line message naming the first one.
    """
    if path is None:
        # Next to this module (package data "data/*"); by file, not by package name, so a test
        # directory that happens to be called `agent` on sys.path cannot hide it.
        with open(default_config_path(), encoding="utf-8") as fh:
            return loads_config(fh.read(), source=None)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        problem = f"{path}: cannot read the config file: {reason}"
        raise ConfigError(f"{problem}; give a readable TOML file with --config", (problem,)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8"
        raise ConfigError(problem, (problem,)) from exc
    return loads_config(text, source=path)


def default_config_path() -> str:
    """Where the shipped default config is installed."""
    # agent/data/, beside this package (agent/config/).
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, "data", DEFAULT_CONFIG_RESOURCE)


def loads_config(text: str, source: str | None = None) -> Config:
    """Validate TOML text; relative paths are taken relative to the directory of `source`."""
    shown = source or "the shipped default config"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        problem = f"{shown}: not valid TOML: {exc}"
        raise ConfigError(f"{problem}; fix the syntax and retry", (problem,)) from exc
    base_dir = os.path.dirname(os.path.abspath(source)) if source else os.getcwd()
    config, problems = _read(data, base_dir, source)
    if problems:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        hint = f"; run 'nkprobe check-config {source}' to list them all" if source and count > 1 else ""
        message = f"{shown}: {count} configuration {noun}, first: {problems[0]}{hint}"
        raise ConfigError(message, tuple(problems))
    assert config is not None
    return config


def _read(data: Mapping[str, Any], base_dir: str, source: str | None) -> tuple[Config | None, list[str]]:
    """Every key of every section, then the rules between them; a Config if nothing failed."""
    reader = Reader(Config, data, base_dir)
    values = reader.table(Config, data, "")
    assert values is not None, "Config has no required key"
    rules.check(values, reader.add)
    if reader.problems:
        listed = sorted(reader.problems, key=lambda problem: _listing_rank(problem[0]))
        return None, [f"{path}: {message}" for path, message in listed]
    config: Config = reader.build(Config, values, source_path=source)
    return replace(config, warnings=rules.warnings(config)), []


def _listing_rank(path: str) -> tuple[int, int]:
    """Where a problem at key path `path` is listed (LISTING_ORDER); an unknown section's first.

    >>> _listing_rank("agnet"), _listing_rank("agent.name"), _listing_rank("targets[12].port")
    ((0, 0), (1, 0), (12, 12))
    """
    section, _, index = path.split(".", 1)[0].partition("[")
    rank = LISTING_ORDER.index(section) + 1 if section in LISTING_ORDER else 0
    index = index.removesuffix("]")
    return rank, int(index) if index.isdigit() else 0


def file_keys() -> dict[str, tuple[str, ...]]:
    """The keys of the file: "" (the sections) and each section's (with "targets", an entry's)."""
    out = {"": tuple(keys_of(Config))}
    for name, (key, _) in keys_of(Config).items():
        if isinstance(key, Nested):
            out[name] = tuple(keys_of(key.cls))
    return out
