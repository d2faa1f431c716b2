"""One recorded upstream change and its mapping to a database row. Pure data, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.model import Path

# Column order of the `changes` table (schema version 2) for inserts and selects.
COLUMNS: tuple[str, ...] = (
    "time",
    "agent",
    "target",
    "prefix",
    "old_tag",
    "new_tag",
    "as_path",
    "hops",
    "evidence",
    "ratio",
    "protocol",
    "border",
)


@dataclass(frozen=True)
class PathChange:
    """A confirmed change of a target's upstream tag, as the history keeps it.

    `hops` is one entry per TTL, `{"hop": N, "from": [ADDR, ...], "rtt_ms": FLOAT | None}` (an empty
    "from" is a silent hop), as `hops_from_path` builds it. `ratio` is the share of the round's flows per
    tag, when several flows were traced.
    """

    time: float  # wall-clock seconds since the epoch
    agent: str
    target: str
    prefix: str
    old_tag: str | None
    new_tag: str
    as_path: tuple[int | None, ...] = ()
    hops: tuple[Mapping[str, Any], ...] = ()
    evidence: tuple[str, ...] = ()
    ratio: Mapping[str, float] | None = None
    protocol: str = ""
    border: str | None = None  # address of the last upstream hop, when known
    id: int | None = field(default=None, compare=False)  # the row id once stored

    def to_row(self) -> tuple[Any, ...]:
        return (
            float(self.time),
            self.agent,
            self.target,
            self.prefix,
            self.old_tag,
            self.new_tag,
            _dumps(list(self.as_path)),
            _dumps([dict(h) for h in self.hops]),
            _dumps(list(self.evidence)),
            None if self.ratio is None else _dumps(dict(self.ratio)),
            self.protocol,
            self.border,
        )

    @classmethod
    def from_row(cls, row_id: int, row: Sequence[Any]) -> PathChange:
        values = dict(zip(COLUMNS, row, strict=True))
        ratio = values["ratio"]
        return cls(
            time=float(values["time"]),
            agent=values["agent"],
            target=values["target"],
            prefix=values["prefix"],
            old_tag=values["old_tag"],
            new_tag=values["new_tag"],
            as_path=tuple(json.loads(values["as_path"])),
            hops=tuple(json.loads(values["hops"])),
            evidence=tuple(json.loads(values["evidence"])),
            ratio=None if ratio is None else json.loads(ratio),
            protocol=values["protocol"] or "",
            border=values["border"],
            id=row_id,
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON object `nkprobe history --json` prints for this change."""
        return {
            "id": self.id,
            "time": self.time,
            "agent": self.agent,
            "target": self.target,
            "prefix": self.prefix,
            "old": self.old_tag,
            "new": self.new_tag,
            "as_path": list(self.as_path),
            "border": self.border,
            "protocol": self.protocol,
            "hops": [dict(h) for h in self.hops],
            "evidence": list(self.evidence),
            "ratio": None if self.ratio is None else dict(self.ratio),
        }


def _dumps(value: Any) -> str:
    # Compact and stable: rows are compared byte for byte in tests and read by people with sqlite3.
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def hops_from_path(path: Path) -> tuple[dict[str, Any], ...]:
    """The `hops` column for one traced path: responding addresses and the best RTT per TTL.

    >>> from agent.model import Hop, Protocol, Reply, ReplyKind
    >>> first = Hop(1, (Reply("10.0.0.1", 0.0012, ReplyKind.TIME_EXCEEDED),))
    >>> p = Path("175.45.176.71", Protocol.TCP, 1, (first, Hop(2)), False, 0.0, 1.0)
    >>> hops_from_path(p)
    ({'hop': 1, 'from': ['10.0.0.1'], 'rtt_ms': 1.2}, {'hop': 2, 'from': [], 'rtt_ms': None})
    """
    out = []
    for hop in path.hops:
        rtts = [r.rtt_s for r in hop.replies]
        out.append(
            {
                "hop": hop.ttl,
                "from": list(hop.addresses),
                "rtt_ms": round(min(rtts) * 1000.0, 3) if rtts else None,
            }
        )
    return tuple(out)
