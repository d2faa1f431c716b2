"""Saying so when a middlebox rewrote a trace's flow identifier (pure).

A Paris traceroute keeps the fields per-flow load balancers hash constant (agent.packets.build). A NAT
that gives the flow another source port or ICMP identifier changes them on the way out; one that maps
the quoted header of the ICMP errors back (RFC 5508 section 3.6 asks it to) but leaves the quoted
checksum as it was on the outside shows it: the quote's checksum is not the one we sent
(agent.trace.session counts those replies in `Path.rewritten_replies`). Beyond that box the flow is
another one, so a different path seen there can be the balancer's choice for the new flow identifier
rather than a routing change; the evidence says so instead of letting it pass for a path fact.
"""

from __future__ import annotations

import dataclasses

from agent.model import Classification, Path


def rewrite_evidence(path: Path) -> str | None:
    """The sentence for a trace whose flow a middlebox rewrote, or None.

    >>> from agent.model import Hop, Protocol, Reply, ReplyKind
    >>> r = Reply("198.18.1.2", 0.002, ReplyKind.TIME_EXCEEDED)
    >>> p = Path("198.19.176.10", Protocol.UDP, 3, (Hop(1, (r,), 1), Hop(2, (r,), 1)), False, 0.0, 0.1,
    ...          rewritten_replies=1, rewrite_hop=2)
    >>> print(rewrite_evidence(p))  # doctest: +NORMALIZE_WHITESPACE
    a middlebox before hop 2 rewrote the probes' flow identifier (1 of 2 replies quote a checksum
    other than the one sent, as a NAT that changes the source port does): beyond it the flow is not
    paris id 3's, so a path seen there is not evidence of a path change
    >>> rewrite_evidence(dataclasses.replace(p, rewritten_replies=0)) is None
    True
    """
    if path.rewritten_replies <= 0:
        return None
    answered = sum(len(h.replies) for h in path.hops)
    field = "ICMP identifier" if path.protocol.value == "icmp" else "source port"
    where = f"before hop {path.rewrite_hop}" if path.rewrite_hop is not None else "on the path"
    return (
        f"a middlebox {where} rewrote the probes' flow identifier ({path.rewritten_replies} of "
        f"{max(answered, path.rewritten_replies)} replies quote a checksum other than the one sent, as a "
        f"NAT that changes the {field} does): beyond it the flow is not paris id {path.flow_id}'s, so a "
        "path seen there is not evidence of a path change"
    )


def with_rewrite_evidence(path: Path, classification: Classification) -> Classification:
    """`classification` with the rewrite sentence added to its evidence, if there is one."""
    sentence = rewrite_evidence(path)
    if sentence is None:
        return classification
    return dataclasses.replace(classification, evidence=(*classification.evidence, sentence))
