"""Configuration: the model (frozen dataclasses with defaults, README "Configuration"), reading the TOML
file, and validation.

`load_config` turns a TOML file into a `Config`, validated once (as blackbox_exporter's
config/config.go): defaults, then types and ranges, then cross-field rules. Unknown keys are rejected.
Every problem is reported by its key path (`targets[2].address: not an IPv4 address`) and all of them
are collected into one `ConfigError`, so an operator fixes a file in one pass.

Relative paths (`agent.state_dir`, `agent.web_config_file`, `asn.files`, `asn.update_dir`) are taken
relative to the directory of the config file, like Prometheus does for its rule files.

- `model`: the sections, `Config` and its per-target helpers, the built-in defaults;
- `read`: `load_config` (a file, or the shipped default), `loads_config` (text);
- `validate`: the checks behind them, and `listen_problem` / `parse_listen`, the one rule of a listen
  address.
"""

from agent.config.model import (
    DEFAULT_ASN_SOURCES,
    DEFAULT_BORDERS,
    DEFAULT_CONFIG_RESOURCE,
    DEFAULT_NAME_SUFFIXES,
    DEFAULT_RIPESTAT_URL,
    DEFAULT_UPSTREAMS,
    MAX_PPS,
    MIN_PREFIX_LENGTH,
    PING_PROTOCOLS,
    RESERVED_GROUPS,
    TRACE_PROTOCOLS,
    AgentSection,
    AsnSection,
    BgpSection,
    ClassifySection,
    Config,
    DestinationSection,
    HistorySection,
    NamesSection,
    PingSection,
    TargetOptions,
    TraceSection,
)
from agent.config.read import default_config_path, load_config, loads_config
from agent.config.validate import _KNOWN, listen_problem, parse_listen

__all__ = [
    "DEFAULT_ASN_SOURCES",
    "DEFAULT_BORDERS",
    "DEFAULT_CONFIG_RESOURCE",
    "DEFAULT_NAME_SUFFIXES",
    "DEFAULT_RIPESTAT_URL",
    "DEFAULT_UPSTREAMS",
    "MAX_PPS",
    "MIN_PREFIX_LENGTH",
    "PING_PROTOCOLS",
    "RESERVED_GROUPS",
    "TRACE_PROTOCOLS",
    "_KNOWN",
    "AgentSection",
    "AsnSection",
    "BgpSection",
    "ClassifySection",
    "Config",
    "DestinationSection",
    "HistorySection",
    "NamesSection",
    "PingSection",
    "TargetOptions",
    "TraceSection",
    "default_config_path",
    "listen_problem",
    "load_config",
    "loads_config",
    "parse_listen",
]
