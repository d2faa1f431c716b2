"""`nkprobe bgp [FILE...] [--config PATH] [--json]`: what BGP says about the destination AS's neighbours,
per /24 of destination.prefixes, from RIPEstat responses saved on disk (agent/bgp). Offline: it reads
files, never the network. Without FILE it reads [bgp] snapshot of the config.

Save the inputs with, for example (on any machine, by hand or from a timer):
    curl -o lg.json 'https://stat.ripe.net/data/looking-glass/data.json?resource=175.45.176.0/22'
    curl -o nb.json 'https://stat.ripe.net/data/asn-neighbours/data.json?resource=AS131279'
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="RIPEstat looking-glass or asn-neighbours responses (JSON, gzip ok); default [bgp] snapshot",
    )
    parser.add_argument("--config", metavar="PATH", help="agent config (destination, upstreams, [bgp])")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from agent.bgp import load_view, tags_of
    from agent.config import load_config
    from agent.errors import UsageError

    config = load_config(args.config)
    files = list(args.files) or list(config.bgp.snapshot)
    if not files:
        raise UsageError("name RIPEstat response files, or set [bgp] snapshot in the config")
    view = load_view(files, config.destination.asn, config.destination.prefixes)
    owner = {asn: tag for tag, asns in config.upstreams.items() for asn in asns}
    rows: list[dict[str, Any]] = []
    for p in view.prefixes:
        rows.append(
            {
                "prefix": p.prefix,
                "neighbours": [{"asn": a, "upstream": owner.get(a, "other")} for a in sorted(p.neighbours)],
                "upstreams": sorted(tags_of(p.neighbours, config.upstreams)),
                "source": p.source,
                "routes": p.routes,
                "other_origins": sorted(p.other_origins),
            }
        )
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(view.time)) if view.time else None
    if args.json:
        doc = {"destination_asn": view.destination_asn, "time": when, "files": files, "prefixes": rows}
        print(json.dumps(doc, indent=2))
        return 0
    print(f"AS{view.destination_asn} neighbours in BGP, snapshot {when or 'undated'}")
    for row in rows:
        if not row["source"]:
            print(f"{row['prefix']}\tno BGP data (no route covers it in these files)")
            continue
        names = ", ".join(f"AS{n['asn']} ({n['upstream']})" for n in row["neighbours"]) or "none"
        extra = f"; also originated by {', '.join(f'AS{a}' for a in row['other_origins'])}"
        print(f"{row['prefix']}\t{names}\t[{row['source']}]" + (extra if row["other_origins"] else ""))
    return 0
