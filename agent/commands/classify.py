"""`nkprobe classify [FILE|-]`: the upstream tag of traceroute results in the RIPE Atlas format.

Input: one JSON array of results, one object, or one object a line (RIPE Atlas downloads come in both
shapes), with or without our additions. Offline: names come from the results' "hostname" fields, AS
numbers from the local tables (a result's own "asn" fields fill in addresses no table knows); nothing
is looked up on the network. `--json` prints the input with "nkprobe" filled in, as one JSON document.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", default="-", metavar="FILE", help="results to read ('-': stdin)")
    parser.add_argument(
        "--asn-file", action="append", default=[], metavar="PATH", help="IP-to-AS file (repeatable)"
    )
    parser.add_argument("--config", metavar="PATH", help="agent config (upstream groups, destination)")
    parser.add_argument("--json", action="store_true", help="print the results with 'nkprobe' filled in")


def read_results(text: str, name: str) -> tuple[list[tuple[str, Any]], str]:
    """The result objects in `text`, each with where it is ("FILE:LINE", "FILE: result N"), and the
    input's shape: "object", "array" or "lines" (one object a line).

    Errors name the file and the line (InputError).
    """
    import json

    from agent.errors import InputError

    stripped = text.strip()
    if not stripped:
        raise InputError(f"{name}: empty input; expected RIPE Atlas traceroute results (JSON)")
    try:
        doc = json.loads(stripped)
    except json.JSONDecodeError as whole:
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if len(lines) < 2:
            raise InputError(f"{name}:{whole.lineno}: not JSON ({whole.msg})") from None
        items: list[tuple[str, Any]] = []
        for number, line in lines:
            try:
                items.append((f"{name}:{number}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputError(f"{name}:{number}: not JSON ({exc.msg}, column {exc.colno})") from None
        return items, "lines"
    if isinstance(doc, list):
        return [(f"{name}: result {i}", obj) for i, obj in enumerate(doc, 1)], "array"
    return [(name, doc)], "object"


def run(args: argparse.Namespace) -> int:
    import sys

    from agent.errors import InputError
    from agent.formats.atlas_in import gc_paused

    name = "<stdin>" if args.file == "-" else args.file
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or exc}; give a readable file or '-'") from None
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text; expected RIPE Atlas traceroute JSON") from None
    with gc_paused():  # thousands of results at once: see agent.formats.atlas_in.gc_paused
        return _classify_all(args, text, name)


def _classify_all(args: argparse.Namespace, text: str, name: str) -> int:
    import json
    import sys

    from agent.classify import Tagger
    from agent.config import load_config
    from agent.errors import InputError
    from agent.formats.atlas_in import addresses_from_ripe
    from agent.formats.atlas_out import classification_to_ripe

    items, shape = read_results(text, name)
    tagger = Tagger.from_config(load_config(args.config), args.asn_file)

    out: list[Any] = []
    ipv6 = 0
    printed = 0
    for where, obj in items:
        if is_ipv6(obj):
            # Tags are IPv4 only (the destination is 175.45.176.0/22, which has no IPv6): such a result is
            # counted, left as it is in --json output and not tagged. Atlas measurements often mix both.
            ipv6 += 1
            if args.json:
                out.append(obj)
            continue
        try:
            # Only the responding addresses: tagging needs no Reply objects (bench/classify_bench.py).
            path = addresses_from_ripe(obj)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        names, given = _annotations(obj)
        result = tagger.tag_addresses(
            path.hops, names=names, errors=path.errors, target=path.target, rtts=path.rtts, given_asns=given
        )
        if args.json:
            out.append({**obj, "nkprobe": classification_to_ripe(result)})
            continue
        if printed:
            print()
        printed += 1
        print(
            f"{path.target} ({path.protocol.value}, paris id {path.flow_id}): {result.upstream}"
            f" (confidence {result.confidence})"
        )
        if result.border is not None:
            b = result.border
            asn = f" AS{b.asn}" if b.asn is not None else ""
            print(f"  border: hop {b.hop} {b.address}{asn}")
        if result.as_path:
            print("  AS path: " + " ".join(f"AS{a}" if a is not None else "?" for a in result.as_path))
        for line in result.evidence:
            print(f"  - {line}")
    if args.json:
        print(json.dumps(out[0] if shape == "object" else out))
    if ipv6:
        print(f"nkprobe classify: {ipv6} IPv6 result(s) not tagged (only IPv4 paths are)", file=sys.stderr)
    return 0


def is_ipv6(obj: Any) -> bool:
    """A RIPE Atlas result of an IPv6 measurement ("af": 6, or an IPv6 destination address)."""
    return isinstance(obj, dict) and (obj.get("af") == 6 or ":" in str(obj.get("dst_addr", "")))


def _annotations(obj: Any) -> tuple[dict[str, str], dict[str, int]]:
    """Our per-reply additions in a result: reverse names and AS numbers by address."""
    names: dict[str, str] = {}
    asns: dict[str, int] = {}
    hops = obj.get("result") if isinstance(obj, dict) else None
    for hop in hops if isinstance(hops, list) else ():
        replies = hop.get("result") if isinstance(hop, dict) else None
        for reply in replies if isinstance(replies, list) else ():
            if not isinstance(reply, dict) or not isinstance(reply.get("from"), str):
                continue
            if isinstance(reply.get("hostname"), str) and reply["hostname"]:
                names.setdefault(reply["from"], reply["hostname"])
            if isinstance(reply.get("asn"), int) and not isinstance(reply.get("asn"), bool):
                asns.setdefault(reply["from"], reply["asn"])
    return names, asns
