"""Path tagging: which upstream a traced path crossed into the destination, with the evidence for it.

- tagger: the one `Tagger` of a config (AS table, settings and their memos, BGP check): `tag(path)`.
- rules: the rule (evidence weighing, confidence, the tag) over a hop list; pure.
- settings: what the rule knows besides the path (`Settings`, frozen) and its bounded memos (`TagCaches`).
- rdns: reverse names within a deadline, and the one table of hostname patterns the rule reads.
- exchanges: the exchange-point peering LANs passed over by default, with their sources.

The names are re-exported lazily (PEP 562): the config imports `exchanges` before a trace's first
packet, and the tagger (with the AS table code) must load during the trace, not before it
(bench/RESULTS.md, "Trace start-up").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.classify.rules import classify, classify_addresses
    from agent.classify.settings import Settings, TagCaches
    from agent.classify.tagger import Tagger

__all__ = ["Settings", "TagCaches", "Tagger", "classify", "classify_addresses"]

_HOMES = {
    "Settings": "settings",
    "TagCaches": "settings",
    "Tagger": "tagger",
    "classify": "rules",
    "classify_addresses": "rules",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        return getattr(importlib.import_module(f"agent.classify.{home}"), name)
    raise AttributeError(f"module 'agent.classify' has no attribute {name!r}")
