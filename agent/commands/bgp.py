"""`nkprobe bgp [FILE...] [--config PATH] [--json]`: what BGP says about the destination AS's neighbours,
per /24 of destination.prefixes, from RIPEstat responses saved on disk (agent/bgp). Offline: it reads
files, never the network. Without FILE it reads [bgp] snapshot of the config.

`nkprobe bgp --live [--duration S]`: the live view instead (agent.bgp.feed: RIPEstat state, then RIS
Live updates from [bgp] ripestat_url / ris_live_url): the per-/24 view once it has one, then each change
as it happens, until Ctrl-C or S seconds; with --json, one JSON document at the end.

Save the inputs with, for example (on any machine, by hand or from a timer):
    curl -o lg.json 'https://stat.ripe.net/data/looking-glass/data.json?resource=175.45.176.0/22'
    curl -o nb.json 'https://stat.ripe.net/data/asn-neighbours/data.json?resource=AS131279'
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.bgp.feed import LiveFeed, LiveStatus
    from agent.bgp.live import Change, LiveView, PrefixState
    from agent.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="RIPEstat looking-glass or asn-neighbours responses (JSON, gzip ok); default [bgp] snapshot",
    )
    parser.add_argument("--config", metavar="PATH", help="agent config (destination, upstreams, [bgp])")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--live",
        action="store_true",
        help="follow the live view (RIPEstat, then RIS Live, per [bgp]) instead of reading files",
    )
    parser.add_argument("--duration", type=float, metavar="S", help="with --live: stop after S seconds")


def run(args: argparse.Namespace) -> int:
    import json

    from agent.bgp import load_view, tags_of
    from agent.config import load_config
    from agent.errors import UsageError

    config = load_config(args.config)
    if args.live or args.duration is not None:
        return _live(args, config)
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


def _live(args: argparse.Namespace, config: Config) -> int:
    import asyncio
    import json
    import logging
    import sys

    from agent.bgp import wscompat
    from agent.bgp.feed import LiveFeed

    _check_live_args(args)
    wscompat.version()  # exit 2 with how to install it, before connecting anywhere
    # What the feed does (connected, refreshed, reconnecting) goes to stderr; the view to stdout.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    printer = _LivePrinter(config.destination.asn, as_json=args.json)
    feed = LiveFeed.from_config(config, on_change=printer.changed, on_state=lambda f: printer.state(f.view))
    status = asyncio.run(_follow(feed, args.duration))
    if status.state_time is None and not status.messages["applied"]:
        # Exit 1 (README "Commands"): nothing came from either source within the run.
        print(
            f"nkprobe bgp: no BGP data: RIPEstat ({config.bgp.ripestat_url}) and RIS Live "
            f"({config.bgp.ris_live_url}) gave nothing; check the URLs and the network (log above)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(_live_document(config.destination.asn, status, printer.changes), indent=2))
    return 0


def _check_live_args(args: argparse.Namespace) -> None:
    """The flags that do not go with --live, refused before anything connects."""
    from agent.errors import UsageError

    if not args.live:
        raise UsageError("--duration goes with --live")
    if args.files:
        raise UsageError("--live reads RIPEstat and RIS Live, not files; drop the FILE arguments")
    if args.duration is not None and args.duration <= 0:
        raise UsageError("--duration must be a number of seconds > 0")


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


class _LivePrinter:
    """What --live prints as the feed goes: the view once, at its first RIPEstat state, then each change
    as it comes (text), or nothing until the end (--json, which reads `changes`)."""

    def __init__(self, destination_asn: int, as_json: bool) -> None:
        self.destination_asn = destination_asn
        self.as_json = as_json
        self.changes: list[Change] = []
        self._shown = False

    def state(self, view: LiveView) -> None:
        if self._shown or self.as_json or view.state_time is None:
            return
        print(f"AS{self.destination_asn} in BGP, {_stamp(view.state_time)} (RIPEstat):")
        for p in view.prefixes:
            print(_prefix_line(p))
        sys.stdout.flush()  # before the changes, which are flushed as they come
        self._shown = True

    def changed(self, change: Change) -> None:
        self.changes.append(change)
        if not self.as_json:
            print(f"{_stamp(change.at)} {change.describe()}", flush=True)


def _prefix_line(p: PrefixState) -> str:
    shares = ", ".join(f"{tag} {share:.0%}" for tag, share in p.shares.items() if share > 0) or "no route"
    vis = "?" if p.visibility is None else f"{p.visibility:.0%}"
    return f"{p.prefix}\t{shares}\tvisibility {vis}\tRPKI {p.rpki or '?'}\t{p.peers} peers"


async def _follow(feed: LiveFeed, duration: float | None) -> LiveStatus:
    """Run the feed for `duration` seconds (None: until cancelled, Ctrl-C) and return its last status."""
    import asyncio

    task = asyncio.create_task(feed.run())
    loop = asyncio.get_running_loop()
    end = None if duration is None else loop.time() + duration
    try:
        while end is None or loop.time() < end:
            await asyncio.sleep(0.1)
        return feed.status()  # before the stream is closed
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _live_document(destination_asn: int, status: LiveStatus, changes: list[Change]) -> dict[str, Any]:
    """--live --json: the last view and every change seen, as one document."""
    return {
        "destination_asn": destination_asn,
        "stream_up": status.stream_up,
        "stale": status.stale,
        "messages": status.messages,
        "prefixes": [
            {
                "prefix": p.prefix, "peers": p.peers, "shares": dict(p.shares),
                "upstreams": sorted(p.upstreams), "neighbours": sorted(p.neighbours),
                "visibility": p.visibility, "rpki": p.rpki, "last_change": p.last_change,
            }
            for p in status.prefixes
        ],
        "changes": [
            {"prefix": c.prefix, "kind": c.kind, "old": sorted(c.old), "new": sorted(c.new), "at": c.at}
            for c in changes
        ],
    }  # fmt: skip
