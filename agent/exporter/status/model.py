"""The status page's data model: the agent's results, its recent history and its health as one plain dict.

This is the one place the page touches the agent's results store (agent.results' Snapshot), the
history's rows and the history writer's status: `status_model` turns them into the dict that
`/status.json` serves as it is and that agent.exporter.status.page renders as HTML, so the two views
cannot disagree. Pure: the time, the
history extract and the lookups come in as arguments (agent.exporter.status.source does the I/O).

Bounded whatever the history holds: the extract is read with LIMITs (source.py), and every list here is
cut to a fixed length (`Limits`), so the page's size depends on the number of targets only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.exporter.status.timeline import Step, segments
from agent.history.record import PathChange
from agent.history.writer import HistoryStatus
from agent.model import NONE, UNKNOWN, Path
from agent.results import Snapshot, TargetSnapshot

if TYPE_CHECKING:  # agent.bgp is imported only when a BGP view is configured
    from agent.bgp.view import BgpCheck

WINDOW_S = 24 * 3600.0  # the timeline's span
MIXED = "mixed"  # a /24 whose targets carry different tags (never a tag of a target)
_CONFIDENCE_ORDER = {"high": 2, "low": 1, NONE: 0}


@dataclass(frozen=True, slots=True)
class Limits:
    changes: int = 20  # rows of "last changes"
    timeline_steps: int = 24  # changes per target drawn in the 24 h timeline (the newest)
    evidence: int = 12  # sentences per target
    evidence_chars: int = 400  # per sentence
    hops: int = 64  # TTL rows per trace
    addresses: int = 4  # responding addresses shown per TTL (load balancing)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class HistoryExtract:
    """What the page reads from the history, already bounded (source.py): the newest changes, and per
    target the changes inside the window (newest `Limits.timeline_steps`, oldest first) and the last one
    before it."""

    recent: Sequence[PathChange] = ()
    window: Mapping[str, Sequence[PathChange]] = field(default_factory=dict)
    before: Mapping[str, PathChange] = field(default_factory=dict)
    complete: Mapping[str, bool] = field(default_factory=dict)  # False: `window` holds only the newest
    error: str | None = None  # the history could not be read (the page says so, the rest still shows)


def status_model(
    snap: Snapshot,
    *,
    now: float,
    history: HistoryExtract,
    bgp: BgpCheck | None = None,
    asn_of: Callable[[str], int | None] = lambda _a: None,
    names: Mapping[str, str] | None = None,
    writer: HistoryStatus | None = None,
    max_pps: float | None = None,
    pps_recent: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """The whole page as a JSON-ready dict (README "Status page" documents its keys)."""
    names = names or {}
    targets = [_target(t, asn_of, names, limits) for t in snap.targets]
    by_prefix: dict[str, list[TargetSnapshot]] = {}
    for t in snap.targets:
        by_prefix.setdefault(t.target.prefix, []).append(t)
    start = now - WINDOW_S
    prefixes = [
        _prefix(
            prefix, members=members, snap=snap, bgp=bgp, history=history, start=start, now=now, limits=limits
        )
        for prefix, members in sorted(by_prefix.items(), key=lambda kv: _sort_key(kv[0]))
    ]
    return {
        "agent": snap.agent_name,
        "version": snap.version,
        "generated_at": now,
        "window": {"start": start, "end": now},
        "tags": list(snap.tags),
        "prefixes": prefixes,
        "targets": targets,
        "changes": [_change(c) for c in list(history.recent)[: limits.changes]],
        "health": _health(
            snap, now=now, bgp=bgp, history=history, writer=writer, max_pps=max_pps, pps_recent=pps_recent
        ),
    }


def _sort_key(prefix: str) -> tuple[int, ...]:
    head = prefix.split("/", 1)[0]
    try:
        return tuple(int(x) for x in head.split("."))
    except ValueError:
        return (1 << 30,)


def _best_confidence(values: Sequence[str | None]) -> str:
    known = [v for v in values if v]
    return max(known, key=lambda v: _CONFIDENCE_ORDER.get(v, 0)) if known else NONE


def _prefix(
    prefix: str,
    *,
    members: list[TargetSnapshot],
    snap: Snapshot,
    bgp: BgpCheck | None,
    history: HistoryExtract,
    start: float,
    now: float,
    limits: Limits,
) -> dict[str, Any]:
    known = {t.tag for t in members if t.tag != UNKNOWN}
    upstream = UNKNOWN if not known else (known.pop() if len(known) == 1 else MIXED)
    carrying = [t.confidence for t in members if t.tag == upstream]
    confidence = _best_confidence(carrying) if upstream not in (UNKNOWN, MIXED) else NONE
    ratio = {tag: sum(t.ratio.get(tag, 0.0) for t in members) / len(members) for tag in snap.tags}
    changes = [t.last_change_at for t in members if t.last_change_at]
    lanes = []
    for t in members:
        address = t.target.address
        rows = history.window.get(address, ())
        steps = [Step(c.time, c.old_tag, c.new_tag) for c in rows]
        before = history.before.get(address)
        spans = segments(
            start=start,
            now=now,
            started_at=snap.started_at,
            current=t.tag,
            before=before.new_tag if before else None,
            steps=steps[-limits.timeline_steps :],
            complete=history.complete.get(address, True) and len(steps) <= limits.timeline_steps,
        )
        lanes.append(
            {
                "target": address,
                "name": t.target.name,
                "segments": [{"start": s.start, "end": s.end, "upstream": s.upstream} for s in spans],
            }
        )
    return {
        "prefix": prefix,
        "upstream": upstream,
        "confidence": confidence,
        "ratio": ratio,
        "since": max(changes) if changes else None,
        "targets": [t.target.address for t in members],
        "bgp": _bgp(prefix, upstream, bgp),
        "timeline": lanes,
    }


def _bgp(prefix: str, upstream: str, bgp: BgpCheck | None) -> dict[str, Any] | None:
    if bgp is None:
        return None
    view = bgp.view.get(prefix)
    if view is None or not view.source:
        return None
    return {
        "source": view.source,
        "neighbours": sorted(view.neighbours),
        "upstreams": sorted(bgp.tags.get(prefix, ())),
        "agrees": bgp.in_bgp(prefix, upstream) if upstream != MIXED else None,
        "time": bgp.view.time,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _target(
    t: TargetSnapshot, asn_of: Callable[[str], int | None], names: Mapping[str, str], limits: Limits
) -> dict[str, Any]:
    c = t.classification
    border = c.border if c is not None else None
    loss = {p: (round(1.0 - sum(r) / len(r), 3) if r else None) for p, r in t.recent.items()}
    hops = _hops(t.path, border.hop if border else None, asn_of, names, limits) if t.path else []
    return {
        "address": t.target.address,
        "name": t.target.name,
        "prefix": t.target.prefix,
        "upstream": t.tag,
        "confidence": t.confidence,
        "ratio": dict(t.ratio),
        "changes": t.changes,
        "last_change": t.last_change_at,
        "up": t.up,
        "rtt_ms": {p: _ms(v) for p, v in t.last_rtt.items()},
        "loss": loss,
        "reached": t.reached,
        "trace": _trace(t.path) if t.path else None,
        "hops": hops,
        "as_path": list(c.as_path) if c else [],
        "border": {"hop": border.hop, "address": border.address, "asn": border.asn} if border else None,
        "evidence": [e[: limits.evidence_chars] for e in (c.evidence if c else ())[: limits.evidence]],
    }


def _trace(path: Path) -> dict[str, Any]:
    return {
        "protocol": str(path.protocol),
        "paris_id": path.flow_id,
        "time": path.started_at,
        "duration_s": round(path.duration_s, 3),
        "reached": path.reached,
        "stop_reason": path.stop_reason,
    }


def _hops(
    path: Path,
    border: int | None,
    asn_of: Callable[[str], int | None],
    names: Mapping[str, str],
    limits: Limits,
) -> list[dict[str, Any]]:
    """One row per TTL and responding address (a silent TTL: one row with address None)."""
    rows: list[dict[str, Any]] = []
    for hop in path.hops[: limits.hops]:
        if hop.silent:
            silent: dict[str, Any] = {"address": None, "name": None, "asn": None, "rtt_ms": None, "err": None}
            rows.append({"hop": hop.ttl, **silent, "mpls": [], "border": hop.ttl == border})
            continue
        for address in hop.addresses[: limits.addresses]:
            replies = [r for r in hop.replies if r.address == address]
            mpls = next((r.mpls for r in replies if r.mpls), ())
            rows.append(
                {
                    "hop": hop.ttl,
                    "address": address,
                    "name": names.get(address),
                    "asn": asn_of(address),
                    "rtt_ms": _ms(min(r.rtt_s for r in replies)),
                    "mpls": [{"label": m.label, "exp": m.exp, "ttl": m.ttl} for m in mpls],
                    "border": hop.ttl == border,
                    "err": next((r.err for r in replies if r.err), None),
                }
            )
    return rows


def _change(c: PathChange) -> dict[str, Any]:
    return {
        "time": c.time,
        "target": c.target,
        "prefix": c.prefix,
        "old": c.old_tag,
        "new": c.new_tag,
        "as_path": list(c.as_path),
    }


def _health(
    snap: Snapshot,
    *,
    now: float,
    bgp: BgpCheck | None,
    history: HistoryExtract,
    writer: HistoryStatus | None,
    max_pps: float | None,
    pps_recent: float | None,
) -> dict[str, Any]:
    """`writer`: the history writer's own status (its fault and error count join the agent's, as in
    /metrics; None before it runs)."""
    uptime = max(0.0, now - snap.started_at)
    write_errors = writer.write_errors if writer else 0
    sent = sum(snap.packets_sent.values())
    return {
        "version": snap.version,
        "started_at": snap.started_at,
        "uptime_s": round(uptime, 1),
        "packets_sent": sent,
        "pps_average": round(sent / uptime, 2) if uptime > 0 else None,
        "pps_recent": None if pps_recent is None or math.isnan(pps_recent) else round(pps_recent, 2),
        "max_pps": max_pps,
        "faults": {**snap.faults, "history": writer is not None and writer.fault},
        "errors": {**snap.errors, "history": snap.errors.get("history", 0) + write_errors},
        "config_reload_ok": snap.last_reload_ok,
        "asn_table": {
            "files": list(snap.asn_files),
            "entries": snap.asn_entries,
            "snapshot_time": snap.asn_snapshot_time,
            "age_s": round(now - snap.asn_snapshot_time, 1) if snap.asn_snapshot_time else None,
        },
        "bgp_snapshot_time": bgp.view.time if bgp else None,
        "history": {
            "pending": writer.pending if writer else 0,
            "written": writer.written if writer else 0,
            "dropped": writer.dropped if writer else 0,
            "write_errors": writer.write_errors if writer else 0,
            "last_error": writer.last_error if writer else None,
            "read_error": history.error,
        },
    }
