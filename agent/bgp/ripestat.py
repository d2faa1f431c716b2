"""RIPEstat data API responses, read offline: what BGP says about the destination AS's neighbours.

Two data calls carry it (formats: https://stat.ripe.net/docs/data-api/api-endpoints/looking-glass and
.../asn-neighbours; every response is the envelope {"status": "ok", "data_call_name": NAME, "data": {...}}):

- `looking-glass?resource=175.45.176.0/22`: the routes RIS collectors hold right now for the prefix and
  its more-specifics, `data.rrcs[].peers[]` with `prefix` and `as_path` (a space-separated string, the
  collector's peer first, the origin last). The AS just before the origin is the origin's neighbour for
  that prefix: the per-/24 answer.
- `asn-neighbours?resource=AS131279`: `data.neighbours[]` with `asn` and `type` ("left": seen before the
  queried AS in paths, i.e. its upstream side; "right": after it; "uncertain": left only as a direct peer
  of a RIS collector). AS level: the same answer for every /24.

routing-status (visibility, origins, first seen) names no neighbour, so it is not read here; MRT RIB
dumps (RFC 6396) would need a parser from PyPI and a 100 MB download for one /22, which the looking glass
answers in 20 KB.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agent.errors import InputError

LOOKING_GLASS = "looking-glass"
ASN_NEIGHBOURS = "asn-neighbours"
DATA_CALLS = (LOOKING_GLASS, ASN_NEIGHBOURS)


@dataclass(frozen=True, slots=True)
class Route:
    """One route a collector's peer holds: the announced prefix and its AS path, peer first."""

    prefix: ipaddress.IPv4Network
    as_path: tuple[int, ...]
    collector: str = ""
    peer: str = ""  # the collector's peer address: one peer's routes are replaced by its updates


@dataclass(frozen=True, slots=True)
class Neighbour:
    asn: int
    side: str  # left | right | uncertain
    paths: int = 0  # RIPEstat's `power`: AS paths with this adjacency


@dataclass(frozen=True, slots=True)
class Document:
    """One response file: its data call, what it is about, when, and what it says."""

    call: str
    resource: str
    time: float | None  # Unix time the data is valid for
    routes: tuple[Route, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()


def parse_as_path(text: str) -> tuple[int, ...]:
    """A looking-glass `as_path` string as AS numbers; AS_SET members (`{1,2}`) are left out, since
    which one carried the route is unknown (RFC 4271 section 5.1.2).

    >>> parse_as_path("3333 1299 20485 131279 131279")
    (3333, 1299, 20485, 131279, 131279)
    >>> parse_as_path("3333 {64500,64501} 131279")
    (3333, 131279)
    """
    out = []
    for token in text.split():
        if token.isdigit():
            out.append(int(token))
    return tuple(out)


def neighbour_of(as_path: Sequence[int], origin: int) -> int | None:
    """The AS just before `origin` at the end of an AS path, skipping prepends; None when the path does
    not end at `origin` or holds nothing before it (the collector peers with the origin itself).

    >>> neighbour_of((3333, 1299, 20485, 131279, 131279), 131279)
    20485
    >>> neighbour_of((131279,), 131279) is None, neighbour_of((3333, 4837), 131279) is None
    (True, True)
    """
    if not as_path or as_path[-1] != origin:
        return None
    i = len(as_path) - 1
    while i >= 0 and as_path[i] == origin:
        i -= 1
    return as_path[i] if i >= 0 else None


def _time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.removesuffix("Z"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def parse_document(doc: Any, where: str) -> Document:
    """A RIPEstat response (already JSON-decoded); InputError naming `where` when it is not one."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("data"), Mapping):
        raise InputError(f'{where}: not a RIPEstat data API response (no "data" object)')
    call = doc.get("data_call_name")
    data = doc["data"]
    if call is None:  # older responses and hand-trimmed files: tell the call by its fields
        call = LOOKING_GLASS if "rrcs" in data else ASN_NEIGHBOURS if "neighbours" in data else None
    if call not in DATA_CALLS:
        raise InputError(
            f"{where}: data call {call!r} is not one nkprobe reads; save looking-glass or asn-neighbours"
        )
    if doc.get("status", "ok") != "ok":
        raise InputError(f"{where}: the response says status {doc.get('status')!r}; download it again")
    resource = str(data.get("resource") or data.get("parameters", {}).get("resource") or "")
    when = _time(data.get("latest_time")) or _time(data.get("query_time")) or _time(doc.get("time"))
    when = when or _time(data.get("query_endtime"))
    if call == LOOKING_GLASS:
        return Document(call, resource, when, routes=_routes(data, where))
    return Document(call, resource.upper().removeprefix("AS"), when, neighbours=_neighbours(data, where))


def _routes(data: Mapping[str, Any], where: str) -> tuple[Route, ...]:
    rrcs = data.get("rrcs")
    if not isinstance(rrcs, list):
        raise InputError(f'{where}: looking-glass data has no "rrcs" list')
    routes = []
    for i, rrc in enumerate(rrcs):
        peers = rrc.get("peers") if isinstance(rrc, Mapping) else None
        if not isinstance(peers, list):
            raise InputError(f'{where}: data.rrcs[{i}] has no "peers" list')
        for j, peer in enumerate(peers):
            try:
                prefix = ipaddress.IPv4Network(str(peer["prefix"]))
                path = parse_as_path(str(peer["as_path"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(
                    f'{where}: data.rrcs[{i}].peers[{j}] needs an IPv4 "prefix" and an "as_path" ({exc})'
                ) from None
            # Lower case: RIS Live names the collector "rrc00" where the looking glass says "RRC00", and
            # the live view keys a peer's routes by both (agent.bgp.live).
            collector = str(rrc.get("rrc", "")).lower()
            routes.append(Route(prefix, path, collector, str(peer.get("peer", ""))))
    return tuple(routes)


def _neighbours(data: Mapping[str, Any], where: str) -> tuple[Neighbour, ...]:
    items = data.get("neighbours")
    if not isinstance(items, list):
        raise InputError(f'{where}: asn-neighbours data has no "neighbours" list')
    out = []
    for i, item in enumerate(items):
        try:
            asn = int(item["asn"])
            side = str(item["type"])
        except (KeyError, TypeError, ValueError):
            raise InputError(f'{where}: data.neighbours[{i}] needs "asn" and "type"') from None
        out.append(Neighbour(asn, side, int(item.get("power") or 0)))
    return tuple(out)


# -- the live view's refresh (agent.bgp.fetch): the envelope checked strictly ---------------------------

ROUTING_STATUS = "routing-status"
RPKI_VALIDATION = "rpki-validation"
# The major versions whose `data` layout is read here (RIPEstat keeps a major version's fields and
# answers `preferred_version` with the same major: https://stat.ripe.net/docs/data-api/). Seen in
# responses: looking-glass 2.1, routing-status 3.3, rpki-validation 0.3. Another major may move fields,
# so it is refused (and the last good view kept) rather than half-read.
VERSIONS = {LOOKING_GLASS: "2", ROUTING_STATUS: "3", RPKI_VALIDATION: "0"}


def check_envelope(doc: Any, call: str, where: str) -> Mapping[str, Any]:
    """The `data` of a RIPEstat response of `call`; InputError with one line saying what is wrong.

    >>> check_envelope({"status": "ok", "data_call_name": "rpki-validation", "version": "0.3",
    ...                 "data": {"status": "valid"}}, "rpki-validation", "x")
    {'status': 'valid'}
    >>> check_envelope({"status": "ok", "data_call_name": "rpki-validation", "version": "1.0",
    ...                 "data": {}}, "rpki-validation", "x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    agent.errors.InputError: x: rpki-validation version '1.0' is not one nkprobe reads (major 0); ...
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("data"), Mapping):
        raise InputError(f'{where}: not a RIPEstat data API response (no "data" object)')
    if doc.get("status") != "ok":
        raise InputError(f"{where}: RIPEstat says status {doc.get('status')!r}: {doc.get('messages')}")
    if doc.get("data_call_name") != call:
        raise InputError(f"{where}: expected the {call} data call, got {doc.get('data_call_name')!r}")
    version = str(doc.get("version", ""))
    if version.split(".", maxsplit=1)[0] != VERSIONS[call]:
        raise InputError(
            f"{where}: {call} version {version!r} is not one nkprobe reads (major {VERSIONS[call]}); "
            "update nkprobe"
        )
    return doc["data"]  # type: ignore[no-any-return]


def parse_looking_glass(doc: Any, where: str) -> tuple[Route, ...]:
    return _routes(check_envelope(doc, LOOKING_GLASS, where), where)


def parse_routing_status(doc: Any, where: str) -> tuple[int, int]:
    """(RIS full-table peers seeing the prefix, all of them) from routing-status `data.visibility.v4`."""
    v4 = check_envelope(doc, ROUTING_STATUS, where).get("visibility", {})
    v4 = v4.get("v4") if isinstance(v4, Mapping) else None
    try:
        seeing, total = int(v4["ris_peers_seeing"]), int(v4["total_ris_peers"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        raise InputError(f"{where}: routing-status data has no visibility.v4 peer counts") from None
    return seeing, total


def parse_rpki_validation(doc: Any, where: str) -> str:
    """The raw `data.status` of rpki-validation (valid, invalid_asn, invalid_length, unknown)."""
    status = check_envelope(doc, RPKI_VALIDATION, where).get("status")
    if not isinstance(status, str):
        raise InputError(f'{where}: rpki-validation data has no "status"')
    return status
