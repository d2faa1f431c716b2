"""`nkprobe lab up|down|flip|status`: the simulated network in namespaces (topology: agent/lab/__init__.py).

NKPROBE_LAB_PREFIX or --prefix (default "nkp-") names the lab; labs with different prefixes coexist.
`down` removes that lab's namespaces (<prefix><role>), their links and helper processes and nothing else;
it is idempotent and exits 0 when there is nothing to remove. `down --all` removes every lab whose prefix
begins with "nkp-" (the contract's "every nkp- namespace": test sessions' labs included).

Exit status: 0 done; 2 for anything the operator must fix: not root, a bad scenario file (the message names
the key, e.g. `links.isp-cu1.delay_ms: must be >= 0`), `up` while this lab is already up (run `nkprobe lab
down` first: `up` never modifies a running lab), `flip`/`status` while it is down.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.lab.info import LabInfo
    from agent.lab.scenario import Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prefix",
        help="namespace name prefix of the lab (default: $NKPROBE_LAB_PREFIX or 'nkp-')",
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    up = sub.add_parser("up", help="build the lab (exit 2 if it is already up)")
    up.add_argument("--scenario", metavar="FILE", help="TOML file with per-link delays (default: built-in)")
    add_home_network_arguments(up)
    down = sub.add_parser("down", help="remove the lab's namespaces, links and helper processes")
    down.add_argument(
        "--all",
        action="store_true",
        help="remove every lab whose prefix starts with 'nkp-' (parallel labs and test labs included)",
    )
    flip = sub.add_parser("flip", help="switch 198.19.179.0/24 to another upstream")
    flip.add_argument("upstream", choices=["china_unicom", "transtelecom"])
    status = sub.add_parser("status", help="files, namespaces, routes in force and delay-link counters")
    status.add_argument("--json", action="store_true", help="print lab.json plus live state as JSON")


def add_home_network_arguments(parser: argparse.ArgumentParser) -> None:
    """`--nat`, `--cgnat`, `--rate-limit`, `--home`: a real volunteer's network (scenario [lab] keys)."""
    group = parser.add_argument_group("a real home network (also [lab] keys of the scenario)")
    group.add_argument("--nat", action="store_true", help="the home router masquerades the vantage host")
    group.add_argument(
        "--nat-random", action="store_true", help="... with random source ports and ICMP identifiers"
    )
    group.add_argument(
        "--cgnat", action="store_true", help="carrier-grade NAT at the ISP (home router in 100.64.0.0/10)"
    )
    group.add_argument(
        "--rate-limit", action="store_true", help="routers and hosts rate-limit ICMP errors (kernel defaults)"
    )
    group.add_argument("--home", action="store_true", help="all of --nat, --cgnat and --rate-limit")


def with_home_network(sc: Scenario, args: argparse.Namespace) -> Scenario:
    """The scenario with the command line's home-network flags turned on (a flag never turns one off)."""
    import dataclasses

    from agent.errors import UsageError

    home = bool(getattr(args, "home", False))
    opts = sc.options
    nat_random = opts.nat_random or bool(getattr(args, "nat_random", False))
    nat = opts.nat or home or bool(getattr(args, "nat", False))
    if nat_random and not nat:
        raise UsageError("--nat-random needs --nat (or nat = true in the scenario's [lab] table)")
    opts = dataclasses.replace(
        opts,
        nat=nat,
        nat_random=nat_random,
        cgnat=opts.cgnat or home or bool(getattr(args, "cgnat", False)),
        rate_limit=opts.rate_limit or home or bool(getattr(args, "rate_limit", False)),
    )
    return dataclasses.replace(sc, options=opts)


def run(args: argparse.Namespace) -> int:
    from agent.lab import build, info, scenario

    prefix = info.resolve_prefix(args.prefix)
    if args.lab_command == "up":
        build.require_root()
        sc = with_home_network(scenario.load(args.scenario), args)
        lab = build.up(prefix, sc)
        print(f"lab {prefix!r} is up ({lab.delay_backend} delay links{_options_note(lab)})")
        _print_summary(lab)
        return 0
    if args.lab_command == "down" and args.all:
        build.require_root()
        for each in build.all_prefixes():
            print(f"lab {each!r} is down (removed {len(build.down(each))} namespaces)")
        return 0
    if args.lab_command == "down":
        removed = build.down(prefix)
        print(
            f"lab {prefix!r} is down"
            + (f" (removed {len(removed)} namespaces)" if removed else " (nothing to remove)")
        )
        return 0
    if args.lab_command == "flip":
        lab = build.flip(prefix, args.upstream)
        print(f"{lab.prefixes['198.19.179.0/24'].prefix} now via {lab.flip}")
        return 0
    return _status(prefix, args.json)


def _options_note(lab: LabInfo) -> str:
    opts = lab.options
    parts = [
        "NAT" + (" (random ports)" if opts.nat_random else "") if opts.nat else "",
        "CGNAT" if opts.cgnat else "",
        f"ICMP rate limit {opts.icmp_ratelimit_ms} ms a peer, {opts.icmp_msgs_per_sec}/s"
        if opts.rate_limit
        else "",
    ]
    shown = [p for p in parts if p]
    return (", " + ", ".join(shown)) if shown else ""


def _print_summary(lab: LabInfo) -> None:
    print(f"  vantage namespace: {lab.vantage_ns} ({lab.vantage_address})")
    if lab.public_address != lab.vantage_address:
        print(f"  seen beyond NAT:   {lab.public_address}")
    print(f"  agent config:      {lab.config_file}")
    print(f"  IP-to-AS file:     {lab.asn_file}")
    print(f"  lab description:   {lab.lab_json}")
    for p in lab.prefixes.values():
        rtts = ", ".join(f"{up} {ms:g} ms" for up, ms in p.rtt_ms.items())
        print(
            f"  {p.prefix:<16} {p.role:<13} hosts {p.echo_host} (echo), {p.quiet_host} (no ICMP); RTT {rtts}"
        )


def _status(prefix: str, as_json: bool) -> int:
    import json

    from agent.lab import build, info

    build.require_root()
    lab = info.load(prefix)
    present = set(build.existing(prefix))
    routes = build.routes_in_force(prefix) if lab.namespaces and f"{prefix}isp" in present else {}
    counters = build.wire_counters(prefix)
    pids = build.helper_pids(prefix)
    if as_json:
        doc = lab.to_json()
        doc["live"] = {
            "namespaces_present": sorted(present),
            "routes": {p: {k: list(v) for k, v in r.items()} for p, r in routes.items()},
            "wire": counters,
            "helpers": pids,
        }
        print(json.dumps(doc, indent=1))
        return 0
    print(
        f"lab {prefix!r}: {len(present)}/{len(lab.namespaces)} namespaces present, "
        f"delay backend {lab.delay_backend}{_options_note(lab)}"
    )
    if lab.public_address != lab.vantage_address:
        print(f"vantage {lab.vantage_address}, seen beyond NAT as {lab.public_address}")
    print("files:")
    for what, path in (("lab", lab.lab_json), ("config", lab.config_file), ("asn", lab.asn_file)):
        print(f"  {what:<7} {path}")
    print("namespaces:")
    print("  " + " ".join(ns if ns in present else f"{ns}(MISSING)" for ns in lab.namespaces))
    print("routes in force (upstream of the ISP's forward route / of the border's return route):")
    for p in lab.prefixes.values():
        now = routes.get(p.prefix, {})
        fwd = " + ".join(now.get("forward", ())) or "NO ROUTE"
        back = " + ".join(now.get("return", ())) or "NO ROUTE"
        print(f"  {p.prefix:<16} {p.role:<13} -> {fwd} / {back}")
    print(
        "helpers: "
        + ", ".join(f"{h} {'pid ' + str(pid) if pid else 'NOT RUNNING'}" for h, pid in pids.items())
    )
    print("delay links (one-way delay; frames forwarded/dropped by loss/send errors, per direction):")
    links = (counters or {}).get("links", {})
    for lk in lab.links.values():
        if not lk.delayed:
            continue
        c = links.get(lk.name, {})
        dirs = "  ".join(
            f"{d} {c[d]['forwarded']}/{c[d]['dropped']}/{c[d]['errors']}" if d in c else f"{d} -"
            for d in ("a>b", "b>a")
        )
        jitter = f" +/-{lk.jitter_ms:g}" if lk.jitter_ms else ""
        loss = f" loss {lk.loss_pct:g}%" if lk.loss_pct else ""
        print(f"  {lk.name:<12} {lk.delay_ms:g}{jitter} ms{loss}  {dirs}")
    return 0
