"""`nkprobe asn update|lookup|info`: refresh the IP-to-AS data on disk, look addresses up, describe it.

`update` fetches the announced prefixes of every configured AS (upstream groups and destination.asn)
from RIPEstat and, if `asn.sources` names any, a full table; it writes them atomically into
`asn.update_dir` and keeps the previous files when anything fails (exit 1, one line per failure).
`lookup` and `info` read local files only.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="asn_command", metavar="ACTION", required=True)
    update = sub.add_parser("update", help="refresh the IP-to-AS data on disk from public sources")
    update.add_argument("--config", metavar="PATH", help="agent config (upstreams, asn.sources, state_dir)")
    update.add_argument(
        "--ripestat-url",
        default=None,
        metavar="URL",
        help="RIPEstat data API base URL (default: asn.ripestat_url, https://stat.ripe.net)",
    )
    update.add_argument(
        "--source", action="append", default=None, metavar="URL", help="full-table URL (replaces asn.sources)"
    )
    update.add_argument("--no-full-table", action="store_true", help="only the announced prefixes")
    update.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="per download (default 300)"
    )
    for name, text in (("lookup", "the AS of addresses, from local tables"), ("info", "the loaded tables")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", metavar="PATH", help="agent config (asn.files, state_dir)")
        p.add_argument("--asn-file", action="append", default=[], metavar="PATH", help="IP-to-AS file")
        if name == "lookup":
            p.add_argument("address", nargs="+", metavar="ADDRESS")


def run(args: argparse.Namespace) -> int:
    import sys

    from agent.config import load_config
    from agent.errors import UsageError

    config = load_config(args.config)
    if args.asn_command == "update":
        from agent.asn.update import run_update

        if not args.timeout > 0:
            raise UsageError("--timeout takes a positive number of seconds")
        asns = {a for group in config.upstreams.values() for a in group} | {config.destination.asn}
        sources = [] if args.no_full_table else (args.source or list(config.asn.sources))
        report = run_update(
            config.asn_update_dir,
            asns,
            sources,
            ripestat_url=args.ripestat_url or config.asn.ripestat_url,
            timeout_s=args.timeout,
        )
        for line in report.written:
            print(line)
        for line in report.failed:
            print(f"nkprobe asn update: {line}", file=sys.stderr)
        return 0 if report.ok else 1

    import time

    from agent.asn import configured_table, table_info

    table = configured_table(config, args.asn_file)
    if args.asn_command == "info":
        info = table_info(table)
        when = "unknown"
        if info.snapshot_time is not None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(info.snapshot_time))
        print(f"entries: {info.entries}\nsnapshot: {when}\nsources: {info.description}")
        return 0
    for address in args.address:
        match = table.lookup(address)
        if match is None:
            print(f"{address}\tunknown")
            continue
        also = "".join(f" AS{a}" for a in match.alternatives)
        group = config.group_of_asn(match.asn) or ""
        print(f"{address}\tAS{match.asn}{also}\t{match.prefix}\t{group}\t{match.source}")
    return 0
