"""Configuration: the model (frozen dataclasses whose fields declare the keys of the file, README
"Configuration"), reading the TOML file, and validation.

`load_config` turns a TOML file into a `Config`, validated once (as blackbox_exporter's
config/config.go): defaults, then each key's type and bounds, then the rules between keys. Unknown keys
are rejected. Every problem is reported by its key path (`targets[2].address: not an IPv4 address`) and
all of them are collected into one `ConfigError`, so an operator fixes a file in one pass.

Relative paths (`agent.state_dir`, `agent.web_config_file`, `asn.files`, `asn.update_dir`,
`bgp.snapshot`) are taken relative to the directory of the config file, like Prometheus does for its
rule files.

- `model`: the sections, `Config`, the record of each target (`TargetConfig`), the built-in defaults;
- `keys`: what a key is (`number`, `integer`, `text`, `flag`, `items`, `groups`...), declared beside
  its field; `checks`: the checks of one value they name (an address, a prefix, a URL, a listen
  address: `listen_problem` / `parse_listen`);
- `sections`: the one reader of any section by those declarations; `rules`: the rules between keys
  and the warnings; `read`: `load_config` (a file, or the shipped default), `loads_config` (text).

How to add a key: add one field to its section's dataclass in `model`, declared by its kind, e.g.
`refresh_s: float = number(300.0, gt=0, le=86400)` under `BgpSection`, or `owner: str = text("")`
under `AgentSection`; a value with its own check names one from `checks` (`text(..., check=checks.
api_url)`), or a new function there that returns the value or raises `Problem`. The reader, the
unknown-key hints and check-config pick it up from the declaration. A rule that relates it to another
key goes in `rules` (and its list `RULES`). Then document it in deploy/config.example.toml (a test
asserts the example sets every key) and the README. A new section is a dataclass of such fields and
one `section(...)` field of `Config`, placed in `read.LISTING_ORDER`.
"""

from agent.config.checks import MIN_PREFIX_LENGTH, listen_problem, parse_listen
from agent.config.model import (
    DEFAULT_ASN_SOURCES,
    DEFAULT_BORDERS,
    DEFAULT_CONFIG_RESOURCE,
    DEFAULT_NAME_SUFFIXES,
    DEFAULT_RIPESTAT_URL,
    DEFAULT_UPSTREAMS,
    MAX_PPS,
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
    TargetConfig,
    TargetEntry,
    TraceSection,
)
from agent.config.read import default_config_path, file_keys, load_config, loads_config

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
    "AgentSection",
    "AsnSection",
    "BgpSection",
    "ClassifySection",
    "Config",
    "DestinationSection",
    "HistorySection",
    "NamesSection",
    "PingSection",
    "TargetConfig",
    "TargetEntry",
    "TraceSection",
    "default_config_path",
    "file_keys",
    "listen_problem",
    "load_config",
    "loads_config",
    "parse_listen",
]
