"""`nkprobe check-config PATH`: validate a config and list every problem by its key path.

Exit 0 with a one-line summary on stdout (warnings on stderr), or exit 2 with, on stderr, a first line
saying how many problems there are, then one problem a line (README "Commands").

The web config the config names (`agent.web_config_file`: TLS and basic auth) is loaded exactly as
`nkprobe run` loads it (agent.exporter.webconfig.load_web_config: the YAML, the certificate and key, the
bcrypt hashes and the bcrypt module), so check-config never calls "ok" a config the agent would refuse.
Its problems are listed under `agent.web_config_file`.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from agent.config import Config, load_config
from agent.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="the TOML config file to check")


def summary(path: str, config: Config) -> str:
    """The one line printed for a valid config."""
    count = len(config.targets)
    slash24s = len({t.prefix for t in config.targets})
    dest = f"AS{config.destination.asn} {' '.join(config.destination.prefixes)}"
    return (
        f"{path}: ok: {count} target{'s' if count != 1 else ''} in {slash24s} /24"
        f"{'s' if slash24s != 1 else ''}, upstream groups {', '.join(config.upstreams)}, destination {dest}, "
        f"at most {config.agent.max_pps:g} packets/s"
    )


def load_all(path: str) -> Config:
    """The config and the web config it names, each checked as the agent checks it; ConfigError."""
    from agent.exporter.webconfig import load_web_config

    config = load_config(path)
    web_path = config.agent.web_config_file
    if web_path:
        try:
            load_web_config(web_path)
        except ConfigError as exc:
            raise ConfigError(
                str(exc),
                tuple(f"agent.web_config_file: {web_path}: {p}" for p in exc.problems)
                or (f"agent.web_config_file: {exc}",),
            ) from None
    return config


def run(args: argparse.Namespace) -> int:
    path: str = args.path
    try:
        config = load_all(path)
    except ConfigError as exc:
        problems = exc.problems or (str(exc),)
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        # An error report: all of it on stderr, the count first (README "Commands": exit 2, message on
        # stderr).
        lines = [f"{path}: {count} {noun}; fix {'it' if count == 1 else 'them'} and run check-config again:"]
        lines.extend(problems)
        print("\n".join(lines), file=sys.stderr)
        return 2
    prefixes = {t.prefix for t in config.targets}
    nets = [ipaddress.ip_network(p) for p in config.destination.prefixes]
    uncovered = [
        str(s) for n in nets if n.prefixlen <= 24 for s in n.subnets(new_prefix=24) if str(s) not in prefixes
    ]
    print(summary(path, config))
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if config.targets and uncovered and len(uncovered) <= 16:
        print(f"note: no target in {', '.join(uncovered)}; their upstream is not measured", file=sys.stderr)
    return 0
