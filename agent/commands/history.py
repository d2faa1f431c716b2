"""`nkprobe history [TARGET] [--config PATH] [--since DURATION] [--json]`: recorded path changes.

Oldest first. TARGET is a target address, a prefix (`175.45.177.0/24`: every target inside it) or a
target name from the config. The database is opened read-only, so this works while the agent runs and
for any user who can read `agent.state_dir`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from typing import TYPE_CHECKING

from agent.errors import InputError, UsageError

if TYPE_CHECKING:
    from agent.history import PathChange


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="TARGET",
        nargs="?",
        help="a target address, a prefix such as 175.45.177.0/24, or a target name (default: all)",
    )
    parser.add_argument("--config", metavar="PATH", help="config file (default: the shipped default)")
    parser.add_argument(
        "--state-dir", metavar="DIR", help="read the history in DIR instead of the config's agent.state_dir"
    )
    parser.add_argument(
        "--since", metavar="DURATION", help="only changes in the last DURATION (90s, 15m, 12h, 7d)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON array of changes")


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def _as_path(path: tuple[int | None, ...]) -> str:
    return " ".join("?" if a is None else str(a) for a in path) or "-"


def _select(target: str | None, names: dict[str, str]) -> tuple[str | None, str | None]:
    """(address, network) for TARGET: an address, a prefix, or a configured name."""
    if target is None:
        return None, None
    if target in names:
        return names[target], None
    try:
        return str(ipaddress.ip_address(target)), None
    except ValueError:
        pass
    try:
        return None, str(ipaddress.ip_network(target, strict=False))
    except ValueError:
        pass
    known = ", ".join(sorted(names)) or "none configured"
    raise UsageError(
        f"TARGET {target!r} is not an address, a prefix like 175.45.177.0/24 or a target name ({known})"
    )


def run(args: argparse.Namespace) -> int:
    import sqlite3  # here, not at module level: `nkprobe --help` imports every command module

    from agent.config import load_config
    from agent.history import HistoryReader, NoHistory, parse_duration

    config = load_config(args.config)
    state_dir: str = args.state_dir or config.agent.state_dir
    names = {t.name: t.address for t in config.targets if t.name}
    labels = {t.address: t.name for t in config.targets if t.name}
    address, network = _select(args.target, names)
    since: float | None = None
    if args.since is not None:
        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from None
    try:
        with HistoryReader(state_dir) as reader:
            changes = reader.changes(target=address, network=network, since=since)
            before = reader.last_before(since, target=address, network=network) if since is not None else []
    except NoHistory as exc:
        # Not an error: the agent has not recorded a change yet. Say so where a person looks.
        if args.json:
            print("[]")
        print(f"{exc} (the agent writes it when it sees the first upstream change)", file=sys.stderr)
        return 0
    except sqlite3.Error as exc:
        raise InputError(
            f"cannot read the path history in {state_dir}: {exc}; check its permissions"
        ) from None

    if args.json:
        json.dump([c.to_json() for c in changes], sys.stdout, indent=1)
        print()
        return 0

    scope = args.target or "any target"
    window = f" in the last {args.since}" if args.since else ""
    for change in before:
        print(
            f"as of {_when(since or 0)}: {_who(change, labels)} on {change.new_tag} "
            f"(since {_when(change.time)})"
        )
    if not changes:
        print(f"no path changes recorded for {scope}{window}")
        return 0
    _table(changes, labels)
    print(f"{len(changes)} change{'s' if len(changes) != 1 else ''} for {scope}{window}")
    return 0


def _who(change: PathChange, labels: dict[str, str]) -> str:
    name = labels.get(change.target)
    return f"{change.target} ({name})" if name else change.target


def _table(changes: list[PathChange], labels: dict[str, str]) -> None:
    header = ("TIME (UTC)", "TARGET", "PREFIX", "FROM", "TO", "BORDER", "AS PATH")
    rows = [
        (
            _when(c.time),
            _who(c, labels),
            c.prefix,
            c.old_tag or "-",
            c.new_tag,
            c.border or "-",
            _as_path(c.as_path),
        )
        for c in changes
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        print("  ".join([*cells, row[-1]]))
