"""Helpers for the history tests: a change factory."""

from __future__ import annotations

from agent.history import PathChange

T0 = 1_780_000_000.0  # 2026-05-28, a fixed wall-clock time


def change(
    i: int = 0, *, target: str = "175.45.177.10", time: float | None = None, **kw: object
) -> PathChange:
    """The i-th synthetic change: alternating china_unicom <-> transtelecom."""
    old, new = ("china_unicom", "transtelecom") if i % 2 == 0 else ("transtelecom", "china_unicom")
    fields: dict[str, object] = {
        "time": T0 + 60.0 * i if time is None else time,
        "agent": "test-agent",
        "target": target,
        "prefix": target.rsplit(".", 1)[0] + ".0/24",
        "old_tag": old,
        "new_tag": new,
        "as_path": (3356, 20485 if new == "transtelecom" else 4837, None, 131279),
        "hops": ({"hop": 1, "from": ["192.0.2.1"], "rtt_ms": 0.4}, {"hop": 2, "from": [], "rtt_ms": None}),
        "evidence": (f"change {i}", "border 188.43.225.153 is AS20485"),
        "ratio": {"china_unicom": 0.25, "transtelecom": 0.75},
        "protocol": "tcp",
        "border": "188.43.225.153",
    }
    fields.update(kw)
    return PathChange(**fields)  # type: ignore[arg-type]
