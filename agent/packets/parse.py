"""Parse received IPv4 packets into replies to our probes, and derive the key that finds the probe.

Input: one IPv4 packet starting at its IP header, as a Linux ``AF_INET, SOCK_RAW`` socket
(IPPROTO_ICMP or IPPROTO_TCP) returns it. `parse` never raises: anything that is not a well-formed
answer to a probe built by `agent.packets.build` (time exceeded or destination unreachable quoting a
UDP, ICMP echo or TCP SYN probe; an echo reply; a SYN-ACK or RST acknowledging one of our sequence
numbers) gives None. Whether it is *ours* (a live session's flow and identity) is the session table's
question, answered with `match_key`.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import NamedTuple

from agent.model import MplsLabel, Protocol, Record, ReplyKind
from agent.packets.build import tcp_ident
from agent.packets.checksum import compensate
from agent.packets.icmpext import split_icmp_payload

ICMP_ECHO_REPLY = 0
ICMP_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
TCP_SYN, TCP_RST, TCP_ACK = 0x02, 0x04, 0x10

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_IPV4 = struct.Struct("!BxHxxHBB")  # version/IHL, total length, flags/fragment offset, TTL, protocol
_ICMP_ECHO = struct.Struct("!BBxxHH")  # type, code, (checksum), identifier, sequence
_WORDS = struct.Struct("!HHHH")  # the first 8 bytes of a quoted transport header
_TCP_REPLY = struct.Struct("!HHxxxxIxB")  # source port, destination port, acknowledgement, flags
_PROTO = {
    socket.IPPROTO_UDP: Protocol.UDP,
    socket.IPPROTO_ICMP: Protocol.ICMP,
    socket.IPPROTO_TCP: Protocol.TCP,
}


@dataclass(frozen=True, slots=True, eq=False, repr=False)
class MatchKey(Record):
    """What the receive path looks a reply up by: the flow (which session) and the identity (which probe).

    `flow` is (source port, destination port) for UDP/TCP and (identifier, 0) for ICMP echo, as *we* sent
    them; `dst` is the probe's destination address.
    """

    protocol: Protocol
    dst: str
    flow: tuple[int, int]
    ident: int

    @property
    def session_key(self) -> tuple[Protocol, str, tuple[int, int]]:
        return (self.protocol, self.dst, self.flow)


class ParsedReply(NamedTuple):
    """A well-formed answer to a probe of ours, with every field a hop record keeps.

    A NamedTuple, immutable like the frozen dataclasses elsewhere but made three times faster: one per
    received packet."""

    kind: ReplyKind
    src: str  # who answered
    reply_ttl: int  # the reply's own IP TTL
    size: int  # the reply's IP length
    protocol: Protocol  # the probe's protocol
    dst: str  # the probe's destination
    sport: int  # the probe's UDP/TCP source port or ICMP identifier
    dport: int  # the probe's UDP/TCP destination port, 0 for ICMP
    ident: int  # the probe's identity (see agent.packets.build)
    icmp_type: int | None = None
    icmp_code: int | None = None
    quoted_ttl: int | None = None  # the probe's TTL as quoted back in an ICMP error
    quoted_checksum: int | None = None  # the quoted UDP/ICMP checksum (constant within a flow)
    mpls: tuple[MplsLabel, ...] = ()


def match_key(reply: ParsedReply) -> MatchKey:
    """The key of the probe `reply` answers."""
    return MatchKey(reply.protocol, reply.dst, (reply.sport, reply.dport), reply.ident)


def parse(data: bytes) -> ParsedReply | None:
    """Parse one received IPv4 packet; None unless it is a well-formed reply to a probe like ours."""
    try:
        # Neither a later fragment (no transport header) nor a first one (a reply to our probes is small
        # enough never to be fragmented).
        ip = _ip_header(data, _MORE_FRAGMENTS | _FRAGMENT_OFFSET)
        if ip is None:
            return None
        ihl, total, ttl, proto = ip
        if total < ihl or total > len(data):
            return None
        if total < len(data):
            data = data[:total]
        src = socket.inet_ntoa(data[12:16])
        if proto == socket.IPPROTO_ICMP:
            return _parse_icmp(data[ihl:], src, ttl, total)
        if proto == socket.IPPROTO_TCP:
            return _parse_tcp(data[ihl:], src, ttl, total)
        return None
    except (IndexError, struct.error, ValueError):  # defence in depth: the checks should suffice
        return None


_MORE_FRAGMENTS = 0x2000
_FRAGMENT_OFFSET = 0x1FFF


def _ip_header(data: bytes, refused_frag_bits: int) -> tuple[int, int, int, int] | None:
    """(header length, total length, TTL, protocol) of an IPv4 header, else None; None too if any of
    `refused_frag_bits` (of the flags and fragment offset word) is set."""
    if len(data) < 20:
        return None
    ver_ihl, total, frag, ttl, proto = _IPV4.unpack_from(data)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or len(data) < ihl or frag & refused_frag_bits:
        return None
    return ihl, total, ttl, proto


def _parse_icmp(icmp: bytes, src: str, ttl: int, size: int) -> ParsedReply | None:
    if len(icmp) < 8:
        return None
    icmp_type, code, ident_field, seq = _ICMP_ECHO.unpack_from(icmp)
    if icmp_type == ICMP_ECHO_REPLY:
        if code != 0 or seq == 0:
            return None
        return ParsedReply(
            ReplyKind.ECHO_REPLY, src, ttl, size, Protocol.ICMP, src, ident_field, 0, seq, icmp_type, code
        )
    if icmp_type == ICMP_TIME_EXCEEDED:
        kind = ReplyKind.TIME_EXCEEDED
        if code != 0:
            return None  # code 1 is fragment reassembly time exceeded: not a TTL expiry
    elif icmp_type == ICMP_UNREACH:
        kind = ReplyKind.UNREACHABLE
        if code > 15:
            return None
    else:
        return None
    quote, mpls = split_icmp_payload(icmp)
    return _parse_quote(
        quote, kind=kind, src=src, ttl=ttl, size=size, icmp_type=icmp_type, code=code, mpls=mpls
    )


def _parse_quote(
    quote: bytes,
    *,
    kind: ReplyKind,
    src: str,
    ttl: int,
    size: int,
    icmp_type: int,
    code: int,
    mpls: tuple[MplsLabel, ...],
) -> ParsedReply | None:
    # The quoted probe may be a first fragment: our probes do not set DF, so a big one that met a smaller
    # MTU was split, and routers beyond answer its first fragment (MF set, offset 0). A later fragment
    # has no transport header to match by.
    ip = _ip_header(quote, _FRAGMENT_OFFSET)
    if ip is None:
        return None
    ihl, _, quoted_ttl, qproto = ip
    protocol = _PROTO.get(qproto)
    transport = quote[ihl:]
    if protocol is None or len(transport) < 8:
        return None  # RFC 792: at least 8 bytes of the original transport header
    qdst = socket.inet_ntoa(quote[16:20])
    a, b, c, d = _WORDS.unpack_from(transport)
    checksum: int | None = None
    if protocol is Protocol.UDP:
        sport, dport, checksum = a, b, d
        ident = _U16.unpack_from(quote, 4)[0]  # the IP ID
        # RFC 1812 routers quote the payload too: its identity word survives IP ID rewriting. Zero padding
        # (RFC 4884 pads a short quote to 128 bytes) fails the compensation check and is ignored.
        if len(transport) >= 12:
            word, check = struct.unpack_from("!HH", transport, 8)
            if word and check == compensate(word):
                ident = word
    elif protocol is Protocol.ICMP:
        if transport[0] != ICMP_ECHO_REQUEST or transport[1] != 0:
            return None
        sport, dport, checksum, ident = c, 0, b, d
    else:
        sport, dport = a, b
        maybe = tcp_ident(_U32.unpack_from(transport, 4)[0])
        if maybe is None:
            return None
        ident = maybe
    if ident == 0:
        return None
    return ParsedReply(
        kind, src, ttl, size, protocol, qdst, sport, dport, ident, icmp_type, code, quoted_ttl, checksum, mpls
    )


def _parse_tcp(tcp: bytes, src: str, ttl: int, size: int) -> ParsedReply | None:
    if len(tcp) < 20 or (tcp[12] >> 4) < 5:
        return None
    their_sport, their_dport, ack, flags = _TCP_REPLY.unpack_from(tcp)
    if not flags & TCP_ACK:
        return None  # an answer to a SYN acknowledges it (RFC 9293 section 3.10.7.2)
    if flags & TCP_RST:
        kind = ReplyKind.TCP_RST
    elif flags & TCP_SYN:
        kind = ReplyKind.TCP_SYNACK
    else:
        return None
    ident = tcp_ident((ack - 1) & 0xFFFFFFFF)
    if ident is None:
        return None
    return ParsedReply(kind, src, ttl, size, Protocol.TCP, src, their_dport, their_sport, ident)
