"""Writing the RIPE Atlas result formats: `trace --json` (traceroute) and `ping --json` (ping).

The format is RIPE Atlas' own (https://atlas.ripe.net/docs/apis/result-format/, "traceroute" and "ping"),
so the results of `nkprobe trace --json` can be read by ripe.atlas.sagan and by tools written for RIPE
Atlas downloads. Our additions are a per-reply "hostname" and "asn" and a top-level "nkprobe" object with
the upstream tag. Reading them back (`nkprobe classify`) is agent.formats.atlas_in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent.model import Classification, Hop, Path, Reply, ReplyKind

if TYPE_CHECKING:
    from agent.model import PingResult
    from agent.probers.base import ProbeSpec

# RIPE Atlas requires these top-level keys (sagan refuses a result without them). We are not a RIPE Atlas
# probe: msm_id and prb_id 0 say "no measurement, no probe"; fw is the firmware version whose format we
# write (5080, current in 2025; sagan switches to the pre-2013 "pf" key below 4460).
_FIRMWARE = 5080


# RFC 4950 section 7: ICMP extension class 1 (MPLS label stack), c-type 1 (incoming label stack).
_MPLS_CLASS = 1
_MPLS_CTYPE = 1


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _reply_to_ripe(
    reply: Reply, target: str, names: Mapping[str, str], asns: Mapping[str, int | None]
) -> dict[str, Any]:
    out: dict[str, Any] = {"from": reply.address, "rtt": _ms(reply.rtt_s)}
    if reply.reply_ttl is not None:
        out["ttl"] = reply.reply_ttl
    out["size"] = reply.size
    err = reply.err
    if err is not None:
        # RIPE writes the letters as text and any other code as its number.
        out["err"] = int(err) if err.isdigit() else err
    if reply.quoted_ttl is not None and reply.quoted_ttl != 1:
        # "ittl": the TTL of our probe as quoted in the ICMP error, written only when it is not 1.
        out["ittl"] = reply.quoted_ttl
    if reply.kind is ReplyKind.TCP_SYNACK:
        out["flags"] = "SA"
    elif reply.kind is ReplyKind.TCP_RST:
        out["flags"] = "R"
    if reply.mpls:
        out["icmpext"] = {
            "version": 2,
            "rfc4884": 1,
            "obj": [
                {
                    "class": _MPLS_CLASS,
                    "type": _MPLS_CTYPE,
                    "mpls": [
                        {"exp": m.exp, "label": m.label, "s": 1 if m.bottom else 0, "ttl": m.ttl}
                        for m in reply.mpls
                    ],
                }
            ],
        }
    name = names.get(reply.address)
    if name:
        out["hostname"] = name
    asn = asns.get(reply.address)
    if asn is not None:
        out["asn"] = int(asn)
    return out


def _hop_to_ripe(
    hop: Hop, target: str, names: Mapping[str, str], asns: Mapping[str, int | None]
) -> dict[str, Any]:
    results: list[dict[str, Any]] = [_reply_to_ripe(r, target, names, asns) for r in hop.replies]
    # One {"x": "*"} per unanswered probe, at least one for a silent hop (RIPE writes a line per packet).
    missing = max(hop.probes_sent - len(hop.replies), 0 if hop.replies else 1)
    results.extend({"x": "*"} for _ in range(missing))
    return {"hop": hop.ttl, "result": results}


def classification_to_ripe(classification: Classification) -> dict[str, Any]:
    """The "nkprobe" object we add to a result: upstream, confidence, border, AS path and evidence."""
    border: dict[str, Any] | None = None
    if classification.border is not None:
        b = classification.border
        border = {"hop": b.hop, "from": b.address, "asn": b.asn}
    return {
        "upstream": classification.upstream,
        "border": border,
        "as_path": list(classification.as_path),
        "evidence": list(classification.evidence),
        "confidence": classification.confidence,  # "high", "low" or "none" (README "How it tags")
    }


def to_ripe(
    path: Path,
    classification: Classification | None = None,
    names: Mapping[str, str] = {},  # read only
    asns: Mapping[str, int | None] = {},  # read only
) -> dict[str, Any]:
    """One traceroute result in RIPE Atlas format, with our additions.

    >>> from agent.model import Protocol
    >>> r = Reply("10.0.0.1", 0.0012, ReplyKind.TIME_EXCEEDED, reply_ttl=64, size=56)
    >>> p = Path("198.19.176.10", Protocol.ICMP, 7, (Hop(1, (r,), 1),), True, 1700000000.0, 1.5)
    >>> to_ripe(p)["result"]
    [{'hop': 1, 'result': [{'from': '10.0.0.1', 'rtt': 1.2, 'ttl': 64, 'size': 56}]}]
    """
    af = 6 if ":" in path.target else 4
    obj: dict[str, Any] = {
        "fw": _FIRMWARE,
        "msm_id": 0,
        "prb_id": 0,
        "type": "traceroute",
        "af": af,
        "proto": path.protocol.value.upper(),
        "dst_addr": path.target,
        "dst_name": path.target,
        "src_addr": path.src or "",
        "from": path.src or "",
        "paris_id": path.flow_id,
        "size": path.packet_size,
        "timestamp": int(path.started_at),
        "endtime": int(path.started_at + path.duration_s),
        "result": [_hop_to_ripe(h, path.target, names, asns) for h in path.hops],
    }
    if path.dst_port is not None:
        obj["dst_port"] = path.dst_port
    if classification is not None:
        obj["nkprobe"] = classification_to_ripe(classification)
    return obj


def to_ripe_ping(results: list[PingResult], spec: ProbeSpec, src: str = "") -> dict[str, Any]:
    """RIPE Atlas ping result (atlas.ripe.net/docs/apis/result-format/, "ping"); msm_id/prb_id 0 say
    "not a RIPE Atlas measurement", as in to_ripe."""
    rtts = [r.rtt_s * 1000 for r in results if r.rtt_s is not None]
    ttl = next((r.reply_ttl for r in results if r.rtt_s is not None), None)
    return {
        "fw": _FIRMWARE,
        "msm_id": 0,
        "prb_id": 0,
        "type": "ping",
        "af": 4,
        "proto": spec.protocol.value.upper(),
        "dst_addr": spec.target,
        "dst_name": spec.target,
        "src_addr": src,
        "from": src,
        "timestamp": int(results[0].sent_at),
        "sent": len(results),
        "rcvd": len(rtts),
        "dup": 0,
        "size": 0,
        "ttl": ttl,
        "min": round(min(rtts), 3) if rtts else -1,
        "avg": round(sum(rtts) / len(rtts), 3) if rtts else -1,
        "max": round(max(rtts), 3) if rtts else -1,
        "result": [_ping_reply(r) for r in results],
        "nkprobe": {"port": spec.port},
    }


def _ping_reply(result: PingResult) -> dict[str, Any]:
    """One element of a ping result's "result": {"rtt": MS}, {"x": "*"} for no answer, or, when a router
    refused the probe with an ICMP error (a loss, not a timeout), {"error": TEXT, "srcaddr": ROUTER}:
    RIPE Atlas' "error" element, with the address the error came from as Atlas' "srcaddr"."""
    if result.rtt_s is not None:
        return {"rtt": round(result.rtt_s * 1000, 3)}
    err, source = result.extra.get("err"), result.extra.get("from")
    if not err:
        return {"x": "*"}
    out: dict[str, Any] = {"error": f"ICMP destination unreachable '{err}'"}  # the RIPE "err" letter
    if source:
        out["srcaddr"] = source
    return out
