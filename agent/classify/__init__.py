"""Path tagging: which upstream a traced path crossed into the destination, with the evidence for it.

- tagger: the rule (evidence weighing, confidence, the tag) over a hop list; pure.
- rdns: reverse names within a deadline, and the one table of hostname patterns the tagger reads.
- exchanges: the exchange-point peering LANs passed over by default, with their sources.

The tagger's names are re-exported lazily (PEP 562): the config imports `exchanges` before a trace's
first packet, and the tagger (with the AS table code) must load during the trace, not before it
(bench/RESULTS.md, "Trace start-up").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.classify.tagger import Settings, classify, classify_addresses

__all__ = ["Settings", "classify", "classify_addresses"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agent.classify import tagger

        return getattr(tagger, name)
    raise AttributeError(f"module 'agent.classify' has no attribute {name!r}")
