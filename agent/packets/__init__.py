"""Probe packets: build them as bytes, parse what comes back, with `struct` (scapy is only the tests' check).

Wire format agreed with agent.net (the net engineer's socket layer):

- **Sending**: `ProbeBuilder(flow).build(ttl, ident)` returns a *complete IPv4 packet* (header
  included) for an ``AF_INET, SOCK_RAW, IPPROTO_RAW`` socket (IP_HDRINCL): send it with
  ``sock.sendto(data, (flow.dst, 0))``. Built with plain `struct` (a few µs), never scapy.
- **Receiving**: `parse(data)` takes one IPv4 packet *starting at its IP header*, as an ``AF_INET,
  SOCK_RAW`` socket with IPPROTO_ICMP (time exceeded, unreachable, echo reply) or IPPROTO_TCP (SYN-ACK,
  RST) returns it from ``recvfrom``. It returns a `ParsedReply` or None (never raises).
- **Matching**: `match_key(parsed)` gives `MatchKey(protocol, dst, flow, ident)`; its `session_key`
  finds the session (see `agent.trace.ReplyTable`), `ident` the probe inside it.

Flow fields and identity placement (Paris traceroute) are described in `agent.packets.build`.
"""

from agent.packets.build import (
    DEFAULT_SIZE,
    MIN_SIZE,
    FlowSpec,
    ProbeBuilder,
    build_probe,
    tcp_ident,
    tcp_seq,
)
from agent.packets.checksum import compensate, inet_checksum, ones_sum
from agent.packets.icmpext import build_mpls_extension, split_icmp_payload
from agent.packets.parse import MatchKey, ParsedReply, match_key, parse

__all__ = [
    "DEFAULT_SIZE",
    "MIN_SIZE",
    "FlowSpec",
    "MatchKey",
    "ParsedReply",
    "ProbeBuilder",
    "build_mpls_extension",
    "build_probe",
    "compensate",
    "inet_checksum",
    "match_key",
    "ones_sum",
    "parse",
    "split_icmp_payload",
    "tcp_ident",
    "tcp_seq",
]
