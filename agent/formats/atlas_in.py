"""Reading the RIPE Atlas traceroute result format: `nkprobe classify`'s input, ours or RIPE Atlas'.

The format is RIPE Atlas' own (https://atlas.ripe.net/docs/apis/result-format/, "traceroute"), as
agent.formats.atlas_out writes it, so `nkprobe classify` reads both `nkprobe trace --json` and real RIPE
Atlas results; our "nkprobe" object, where present, comes back as a Classification.

Reading is lenient: RIPE Atlas results carry fields we do not need ("lts", "msm_name", "itos"...), lines
for late and duplicate answers ("late", "dup"), hop-level send errors ("error") and the final
`{"hop": 255, ...}` line of some firmware versions; all of these parse. Malformed input raises
InputError with a message saying what is wrong.
"""

from __future__ import annotations

import gc
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from agent.errors import InputError
from agent.model import (
    Border,
    Classification,
    Hop,
    MplsLabel,
    Path,
    Protocol,
    Reply,
    ReplyKind,
)

# The ICMP unreachable code each RIPE "err" letter stands for (RFC 792, RFC 1812 5.2.7.1); the inverse of
# agent.model.UNREACHABLE_ERR, with "A" read as code 13 (traceroute's !X) and "p" as port unreachable.
_ERR_CODE: dict[str, int] = {"N": 0, "H": 1, "P": 2, "p": 3, "F": 4, "S": 5, "A": 13, "h": 14}

_PROTOCOLS: dict[str, Protocol] = {p.value: p for p in Protocol}  # Protocol(text), without Enum's call


def _is_ip(text: str) -> bool:
    """IPv4 or IPv6 address text (inet_pton: ~20 times faster than ipaddress, which adds up per reply)."""
    if text in _VALID:
        return True
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, text)
        except (OSError, TypeError):
            continue
        if len(_VALID) >= _VALID_MAX:
            _VALID.clear()  # bounded: a full clear is cheap and keeps memory flat
        _VALID.add(text)
        return True
    return False


# Addresses already known to be valid: hop addresses repeat across the traces of one file (the same
# routers answer every flow), so most replies skip inet_pton.
_VALID: set[str] = set()
_VALID_MAX = 65536

# A reply line with only these keys, "rtt" a float and "ttl"/"size" integers, is a plain time-exceeded
# or final answer; `_plain` reads it without the checks of `_reply_from_ripe` (most lines are plain).
_PLAIN_KEYS = frozenset(("from", "rtt", "ttl", "size", "hostname", "asn"))
# For its address alone, a TCP answer's "flags" (and the "hdropts" beside them) and an MPLS label stack
# ("icmpext", still checked) change nothing either: they never set the address or "err".
_ADDRESS_KEYS = _PLAIN_KEYS | {"flags", "hdropts", "icmpext"}


def _int(value: Any, what: str, default: int | None = None) -> int | None:
    if type(value) is int:
        return value
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{what} must be a number, got {value!r}") from None


def _float(value: Any, what: str) -> float | None:
    if type(value) is float:
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"{what} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{what} must be a number, got {value!r}") from None


def _mpls(icmpext: Any) -> tuple[MplsLabel, ...]:
    if not isinstance(icmpext, dict):
        return ()
    labels: list[MplsLabel] = []
    objects = icmpext.get("obj")
    for ext in objects if isinstance(objects, list) else ():
        if not isinstance(ext, dict) or not isinstance(ext.get("mpls"), list):
            continue
        for entry in ext["mpls"]:
            if not isinstance(entry, dict):
                continue
            labels.append(
                MplsLabel(
                    label=int(entry.get("label", 0)),
                    exp=int(entry.get("exp", 0)),
                    bottom=bool(entry.get("s", 0)),
                    ttl=int(entry.get("ttl", 0)),
                )
            )
    return tuple(labels)


def _reply_from_ripe(raw: dict[str, Any], proto: Protocol, dst: str, hop: int, index: int) -> Reply | None:
    """A reply line, or None for a timeout, a late or a duplicate answer (no new information)."""
    if "x" in raw or "late" in raw or raw.get("dup"):
        return None
    where = _Where(hop, index)
    address = raw.get("from")
    rtt = raw.get("rtt")
    if type(rtt) is not float:  # the common case skips the checks (and their messages) below
        rtt = _float(rtt, where("rtt"))
    if not isinstance(address, str) or not address or rtt is None:
        return None
    if not _is_ip(address):
        raise InputError(f"{where('from')} is not an IP address: {address!r}")
    err = raw.get("err")
    flags = raw.get("flags")
    icmp_type: int | None
    icmp_code: int | None = None
    if err is not None:
        kind = ReplyKind.UNREACHABLE
        icmp_type = 3
        if (isinstance(err, int | float) and not isinstance(err, bool)) or (
            isinstance(err, str) and err.isdigit()
        ):
            icmp_code = int(err)
        elif isinstance(err, str):
            icmp_code = _ERR_CODE.get(err)
    elif isinstance(flags, str) and flags:
        kind = ReplyKind.TCP_SYNACK if "S" in flags else ReplyKind.TCP_RST
        icmp_type = None
    elif address == dst and proto is Protocol.ICMP:
        kind, icmp_type = ReplyKind.ECHO_REPLY, 0
    elif address == dst and proto is Protocol.UDP:
        kind, icmp_type, icmp_code = ReplyKind.UNREACHABLE, 3, 3  # port unreachable: the UDP trace's end
    else:
        kind, icmp_type, icmp_code = ReplyKind.TIME_EXCEEDED, 11, 0
    ttl = raw.get("ttl")
    ittl = raw.get("ittl", 1)
    size = raw.get("size", 0)
    icmpext = raw.get("icmpext")
    return Reply(
        address=address,
        rtt_s=rtt / 1000.0,
        kind=kind,
        reply_ttl=ttl if type(ttl) is int else _int(ttl, where("ttl")),
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        quoted_ttl=ittl if type(ittl) is int else _int(ittl, where("ittl"), 1),
        size=size if type(size) is int else (_int(size, where("size"), 0) or 0),
        mpls=_mpls(icmpext) if icmpext else (),
    )


class _Where:
    """Names a reply in error messages; formatted only when there is an error to report."""

    __slots__ = ("hop", "index")

    def __init__(self, hop: int, index: int) -> None:
        self.hop = hop
        self.index = index

    def __call__(self, key: str) -> str:
        return f"hop {self.hop} reply {self.index + 1}: {key}"


def _header(obj: Any) -> tuple[str, Protocol, list[Any]]:
    """dst_addr, proto and the raw hop list of a result, checked."""
    if not isinstance(obj, dict):
        raise InputError(f"a traceroute result must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type", "traceroute")
    if kind != "traceroute":
        raise InputError(f"not a traceroute result (type {kind!r})")
    dst = obj.get("dst_addr")
    if not isinstance(dst, str) or not dst:
        raise InputError(
            "not a RIPE Atlas traceroute result (no 'dst_addr'); expected the results API's JSON: an array"
            " of results, one result, or one result a line"
        )
    if not _is_ip(dst):
        raise InputError(f"'dst_addr' is not an IP address: {dst!r}")
    proto = _PROTOCOLS.get(str(obj.get("proto", "ICMP")).lower())
    if proto is None:
        raise InputError(f"unknown 'proto' {obj.get('proto')!r} (ICMP, UDP or TCP)")
    raw_hops = obj.get("result", [])
    if not isinstance(raw_hops, list):
        raise InputError("'result' must be a list of hops (legacy RIPE Atlas formats are not supported)")
    return dst, proto, raw_hops


def _hop_header(raw_hop: Any, index: int) -> tuple[int, list[Any]]:
    """The hop number and the raw reply lines of result[index], checked."""
    if not isinstance(raw_hop, dict):
        raise InputError(f"result[{index}] must be an object with 'hop' and 'result'")
    ttl = raw_hop.get("hop")
    if type(ttl) is not int:
        ttl = _int(ttl, f"result[{index}].hop", index + 1)
        assert ttl is not None
    raw_replies = raw_hop.get("result", [])
    if not isinstance(raw_replies, list):
        raise InputError(f"result[{index}].result must be a list")
    return ttl, raw_replies


def _plain(raw: dict[str, Any]) -> str | None:
    """The address of a plain reply line (see _PLAIN_KEYS) whose address was seen valid before, else None
    (then `_reply_from_ripe` decides: timeouts, errors, flags, odd types and new addresses go there)."""
    if raw.keys() <= _PLAIN_KEYS:
        address = raw.get("from")
        if (
            type(address) is str
            and address in _VALID
            and type(raw.get("rtt")) is float
            and type(raw.get("ttl")) is int
            and type(raw.get("size", 0)) is int
        ):
            return address
    return None


def _trailer(obj: dict[str, Any]) -> tuple[int, float, float | None, int | None, int]:
    """paris_id, timestamp, endtime, dst_port and size of a result, checked."""
    started = _float(obj.get("timestamp"), "timestamp") or 0.0
    ended = _float(obj.get("endtime"), "endtime")
    flow_id = _int(obj.get("paris_id"), "paris_id", 0) or 0
    port = obj.get("dst_port")
    dst_port = _int(port, "dst_port") if port is not None else None
    size = _int(obj.get("size"), "size", 0) or 0
    return flow_id, started, ended, dst_port, size


def from_ripe(obj: Any) -> Path:
    """A Path from one RIPE Atlas traceroute result (ours or downloaded from RIPE Atlas)."""
    dst, proto, raw_hops = _header(obj)
    # The kind of a plain line (no "err", no "flags") depends only on whether the destination sent it.
    if proto is Protocol.ICMP:
        at_dst: tuple[ReplyKind, int | None, int | None] = (ReplyKind.ECHO_REPLY, 0, None)
    elif proto is Protocol.UDP:
        at_dst = (ReplyKind.UNREACHABLE, 3, 3)  # port unreachable: the UDP trace's end
    else:
        at_dst = (ReplyKind.TIME_EXCEEDED, 11, 0)
    hops: list[Hop] = []
    for index, raw_hop in enumerate(raw_hops):
        ttl, raw_replies = _hop_header(raw_hop, index)
        replies: list[Reply] = []
        sent = 0
        for j, raw in enumerate(raw_replies):
            if not isinstance(raw, dict):
                raise InputError(f"result[{index}].result[{j}] must be an object")
            address = _plain(raw)
            if address is not None:
                sent += 1
                kind, icmp_type, icmp_code = at_dst if address == dst else (ReplyKind.TIME_EXCEEDED, 11, 0)
                replies.append(
                    Reply(
                        address,
                        raw["rtt"] / 1000.0,
                        kind,
                        raw["ttl"],
                        icmp_type,
                        icmp_code,
                        1,
                        raw.get("size", 0),
                    )
                )
                continue
            if not ("late" in raw or raw.get("dup")):
                sent += 1  # late and duplicate lines answer a probe already counted
            reply = _reply_from_ripe(raw, proto, dst, ttl, j)
            if reply is not None:
                replies.append(reply)
        hops.append(Hop(ttl=ttl, replies=tuple(replies), probes_sent=sent))
    reached = any(r.address == dst and r.err is None for h in hops[-1:] for r in h.replies)
    flow_id, started, ended, dst_port, size = _trailer(obj)
    src = obj.get("src_addr")
    stop_reason = "reached" if reached else ""
    if not reached and hops and any(r.err is not None for r in hops[-1].replies):
        stop_reason = "unreachable"
    return Path(
        target=dst,
        protocol=proto,
        flow_id=flow_id,
        hops=tuple(hops),
        reached=reached,
        started_at=started,
        duration_s=max((ended if ended is not None else started) - started, 0.0),
        src=src if isinstance(src, str) and src else None,
        dst_port=dst_port,
        packet_size=size,
        stop_reason=stop_reason,
    )


class Addresses(NamedTuple):
    """What classification needs of one result: the responding addresses per hop, without Reply objects.

    `from_ripe` builds a frozen Reply per answer; reading only the addresses is several times cheaper and
    is what `nkprobe classify` does with each stored result. Same input checks and errors as from_ripe.
    """

    target: str
    protocol: Protocol
    flow_id: int
    hops: list[tuple[int, tuple[str, ...]]]  # (hop number, distinct addresses in order of first answer)
    errors: dict[int, tuple[str, ...]]  # index in `hops` -> RIPE "err" letters of its replies (Reply.err)
    rtts: dict[int, float]  # index in `hops` -> its smallest RTT in seconds, for hops that answered


def addresses_from_ripe(obj: Any) -> Addresses:
    """The responding addresses of one RIPE Atlas traceroute result; `from_ripe` without the replies.

    >>> a = addresses_from_ripe({"dst_addr": "175.45.176.71", "result": [
    ...     {"hop": 1, "result": [{"from": "10.0.0.1", "rtt": 1.5}, {"x": "*"}]},
    ...     {"hop": 2, "result": [{"from": "175.45.176.71", "rtt": 9.0, "err": "A"}]}]})
    >>> a.hops, a.errors, a.rtts
    ([(1, ('10.0.0.1',)), (2, ('175.45.176.71',))], {1: ('A',)}, {0: 0.0015, 1: 0.009})
    """
    dst, proto, raw_hops = _header(obj)
    hops: list[tuple[int, tuple[str, ...]]] = []
    errors: dict[int, tuple[str, ...]] = {}
    rtts: dict[int, float] = {}
    valid, plain_keys = _VALID, _ADDRESS_KEYS
    for index, raw_hop in enumerate(raw_hops):
        if type(raw_hop) is dict:
            ttl = raw_hop.get("hop")
            raw_replies = raw_hop.get("result", ())
        if type(raw_hop) is not dict or type(ttl) is not int or type(raw_replies) is not list:
            ttl, raw_replies = _hop_header(raw_hop, index)
        addresses: list[str] = []
        errs: list[str] | None = None  # rare: made when needed
        best = -1.0  # smallest RTT of the hop in seconds, computed as from_ripe does (-1: none yet)
        for raw in raw_replies:
            if type(raw) is dict and raw.keys() <= plain_keys:
                # `_plain`, inlined: this runs for every reply line of every stored result.
                address = raw.get("from")
                if (
                    type(address) is str
                    and address in valid
                    and type(raw.get("rtt")) is float
                    and type(raw.get("ttl")) is int
                    and type(raw.get("size", 0)) is int
                ):
                    if raw.get("icmpext"):
                        _mpls(raw["icmpext"])  # read only for its errors, as from_ripe reads it
                    if address not in addresses:
                        addresses.append(address)
                    rtt = raw["rtt"] / 1000.0
                    if best < 0 or rtt < best:
                        best = rtt
                    continue
            if type(raw) is dict and "x" in raw:
                continue  # a timeout
            # Everything else as from_ripe reads it (same checks, same errors).
            j = next(k for k, r in enumerate(raw_replies) if r is raw)
            if not isinstance(raw, dict):
                raise InputError(f"result[{index}].result[{j}] must be an object")
            reply = _reply_from_ripe(raw, proto, dst, ttl, j)
            if reply is None:
                continue
            if reply.address not in addresses:
                addresses.append(reply.address)
            if best < 0 or reply.rtt_s < best:
                best = reply.rtt_s
            err = reply.err
            if err is not None:
                if errs is None:
                    errs = []
                if err not in errs:
                    errs.append(err)
        if best >= 0:
            rtts[len(hops)] = best
        hops.append((ttl, tuple(addresses)))
        if errs is not None:
            errors[index] = tuple(errs)
    flow_id = _trailer(obj)[0]
    return Addresses(dst, proto, flow_id, hops, errors, rtts)


def classification_from_ripe(obj: Any) -> Classification | None:
    """Our "nkprobe" object back as a Classification, or None when the result has none."""
    if not isinstance(obj, dict) or not isinstance(obj.get("nkprobe"), dict):
        return None
    nk = obj["nkprobe"]
    border = None
    if isinstance(nk.get("border"), dict):
        b = nk["border"]
        border = Border(
            hop=_int(b.get("hop"), "nkprobe.border.hop", 0) or 0,
            address=str(b.get("from", "")),
            asn=_int(b.get("asn"), "nkprobe.border.asn"),
        )
    as_path = tuple(_int(a, "nkprobe.as_path") for a in nk.get("as_path") or ())
    return Classification(
        upstream=str(nk.get("upstream", "unknown")),
        border=border,
        as_path=as_path,
        evidence=tuple(str(e) for e in nk.get("evidence") or ()),
        confidence=str(nk.get("confidence", "low")),
    )


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many results are read and tagged at once.

    json.loads builds some fifty dicts and lists per result and nothing in reading or tagging makes a
    reference cycle, yet the collector would scan the growing heap again and again: about half the
    time of reading 10,000 results (bench/classify_bench.py). Reference counting still frees everything.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
