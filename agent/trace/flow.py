"""Flow-identifier arithmetic: a Paris id (RIPE Atlas "paris_id") to the constant fields of one flow.

Several flows toward one target are several sessions with different flow ids; each flow id selects a
different UDP/TCP source port or ICMP echo identifier, which per-flow load balancers hash (and, for ICMP,
a different checksum, which some balancers hash because it sits where the ports would be).
"""

from __future__ import annotations

from agent.model import Protocol
from agent.packets.build import FlowSpec

# Source ports above Linux's default ephemeral range (32768-60999, ip_local_port_range) so a probe's
# 4-tuple never collides with a real local socket's.
SPORT_BASE = 61000
ICMP_ID_BASE = 0x4E00  # ICMP echo identifiers: 0x4E00 + flow id ("N"), mod 2**16
DEFAULT_PORT: dict[Protocol, int] = {
    Protocol.UDP: 33435,  # the traditional traceroute base port + 1, as RIPE Atlas uses
    Protocol.TCP: 80,
    Protocol.ICMP: 0,
}
MAX_FLOW_ID = 65535 - SPORT_BASE


def flow_spec(
    protocol: Protocol,
    dst: str,
    flow_id: int,
    *,
    src: str | None = None,
    port: int | None = None,
    size: int = 0,
    port_base: int = SPORT_BASE,
) -> FlowSpec:
    """The constant fields of flow `flow_id` toward `dst`.

    >>> f = flow_spec(Protocol.TCP, "198.19.176.10", 3, src="198.18.0.2")
    >>> (f.sport, f.dport)
    (61003, 80)
    >>> flow_spec(Protocol.ICMP, "198.19.176.10", 1).sport == 0x4E01
    True
    """
    if not 0 <= flow_id <= MAX_FLOW_ID:
        raise ValueError(f"flow id must be 0..{MAX_FLOW_ID}, got {flow_id}")
    if protocol is Protocol.ICMP:
        return FlowSpec(protocol, dst, sport=(ICMP_ID_BASE + flow_id) & 0xFFFF, dport=0, src=src, size=size)
    sport = port_base + flow_id
    if not 0 < sport <= 0xFFFF:
        raise ValueError(f"source port base {port_base} + flow id {flow_id} exceeds 65535")
    dport = DEFAULT_PORT[protocol] if port is None else port
    return FlowSpec(protocol, dst, sport=sport, dport=dport, src=src, size=size)


def ident_sequence(base: int, index: int) -> int:
    """The identity of the `index`-th probe of a session whose identities start after `base`: 1..65535.

    Identity 0 is never used (Linux replaces a zero IP ID). Each session of a flow starts where the
    previous one stopped (`Session.next_ident_base`), so a late reply to an earlier trace of the same flow
    never matches a probe of the next one.

    >>> ident_sequence(0, 0), ident_sequence(65534, 0), ident_sequence(65534, 1)
    (1, 65535, 1)
    """
    return (base + index) % 0xFFFF + 1
