"""A middlebox that rewrites the flow: counted on the Path and said in the evidence (scripted wire).

The lab test (tests/lab/test_nat_lab.py) does it with a real nftables rewrite; this is the pure logic.
"""

from __future__ import annotations

import doctest
import struct
from dataclasses import dataclass

import pytest

from agent.lab.sim import SimNetwork, run
from agent.model import Classification, Protocol
from agent.trace import Session, TraceParams, rewrite

TARGET = "198.19.176.10"
ROUTERS = ["198.18.0.2", "198.18.1.2", "198.18.48.2"]


@dataclass
class RewritingWire(SimNetwork):
    """A box right after hop `after` changes the checksum word (UDP/ICMP) of every probe that passes it,
    and what comes back quotes the changed one (the port or identifier itself it maps back)."""

    after: int = 1

    def answer(self, probe: bytes) -> list[tuple[float, bytes]]:
        if probe[8] > self.after:
            ihl = (probe[0] & 0x0F) * 4
            offset = ihl + (6 if probe[9] == 17 else 2)
            word = struct.unpack_from("!H", probe, offset)[0]
            probe = probe[:offset] + struct.pack("!H", word ^ 0x5A5A) + probe[offset + 2 :]
        return super().answer(probe)


@pytest.mark.parametrize("protocol", [Protocol.UDP, Protocol.ICMP])
def test_rewritten_quotes_are_counted_from_the_first_hop_beyond_the_box(protocol: Protocol) -> None:
    params = TraceParams(TARGET, protocol, src="198.18.0.1", max_hops=8, window=8)
    path = run(Session(params), RewritingWire(ROUTERS, TARGET, quote=None, after=1))
    assert path.reached and [h.addresses[0] for h in path.hops] == [*ROUTERS, TARGET]
    quoting = 2 if protocol is Protocol.ICMP else 3  # hops 2, 3; a port unreachable quotes too
    assert (path.rewritten_replies, path.rewrite_hop) == (quoting, 2)
    tagged = rewrite.with_rewrite_evidence(path, Classification("china_unicom", evidence=("hop 3 ...",)))
    assert tagged.evidence[0] == "hop 3 ..." and len(tagged.evidence) == 2
    assert tagged.evidence[1].startswith("a middlebox before hop 2 rewrote the probes' flow identifier")


def test_an_untouched_flow_says_nothing() -> None:
    params = TraceParams(TARGET, Protocol.UDP, src="198.18.0.1", max_hops=8, window=8)
    path = run(Session(params), SimNetwork(ROUTERS, TARGET, quote=None))
    assert (path.rewritten_replies, path.rewrite_hop) == (0, None)
    plain = Classification("china_unicom", evidence=("x",))
    assert rewrite.with_rewrite_evidence(path, plain) is plain


def test_doctests() -> None:
    result = doctest.testmod(rewrite)
    assert result.failed == 0 and result.attempted > 0
