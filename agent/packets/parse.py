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

from agent.model import MplsLabel, Protocol, ReplyKind
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
_PROTO = {
    socket.IPPROTO_UDP: Protocol.UDP,
    socket.IPPROTO_ICMP: Protocol.ICMP,
    socket.IPPROTO_TCP: Protocol.TCP,
}


@dataclass(frozen=True, slots=True)
class MatchKey:
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


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """A well-formed answer to a probe of ours, with every field a hop record keeps."""

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
        return _parse(data)
    except (IndexError, struct.error, ValueError):  # defence in depth: the checks below should suffice
        return None


def _ip_header(data: bytes) -> tuple[int, int, int, int, int] | None:
    """(header length, total length, TTL, protocol, IP ID) of a first-fragment IPv4 header, else None."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20 or len(data) < ihl:
        return None
    total = (data[2] << 8) | data[3]
    frag_offset = ((data[6] & 0x1F) << 8) | data[7]
    if frag_offset:
        return None  # not the first fragment: no transport header
    return ihl, total, data[8], data[9], (data[4] << 8) | data[5]


def _parse(data: bytes) -> ParsedReply | None:
    ip = _ip_header(data)
    if ip is None:
        return None
    ihl, total, ttl, proto, _ = ip
    if total < ihl or total > len(data):
        return None
    if data[6] & 0x20:
        return None  # more fragments follow: a reply to our small probes is never fragmented
    data = data[:total]
    src = socket.inet_ntoa(data[12:16])
    payload = data[ihl:]
    if proto == socket.IPPROTO_ICMP:
        return _parse_icmp(payload, src, ttl, total)
    if proto == socket.IPPROTO_TCP:
        return _parse_tcp(payload, src, ttl, total)
    return None


def _parse_icmp(icmp: bytes, src: str, ttl: int, size: int) -> ParsedReply | None:
    if len(icmp) < 8:
        return None
    icmp_type, code = icmp[0], icmp[1]
    if icmp_type == ICMP_ECHO_REPLY:
        if code != 0:
            return None
        ident_field, seq = _U16.unpack_from(icmp, 4)[0], _U16.unpack_from(icmp, 6)[0]
        if seq == 0:
            return None
        return ParsedReply(
            ReplyKind.ECHO_REPLY, src, ttl, size, Protocol.ICMP, src, ident_field, 0, seq,
            icmp_type=icmp_type, icmp_code=code,
        )  # fmt: skip
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
    ip = _ip_header(quote)
    if ip is None:
        return None
    ihl, _, quoted_ttl, qproto, ip_id = ip
    protocol = _PROTO.get(qproto)
    transport = quote[ihl:]
    if protocol is None or len(transport) < 8:
        return None  # RFC 792: at least 8 bytes of the original transport header
    qdst = socket.inet_ntoa(quote[16:20])
    a, b, c, d = struct.unpack_from("!HHHH", transport)
    checksum: int | None = None
    if protocol is Protocol.UDP:
        sport, dport, checksum = a, b, d
        ident = ip_id
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
        kind, src, ttl, size, protocol, qdst, sport, dport, ident,
        icmp_type=icmp_type, icmp_code=code, quoted_ttl=quoted_ttl, quoted_checksum=checksum, mpls=mpls,
    )  # fmt: skip


def _parse_tcp(tcp: bytes, src: str, ttl: int, size: int) -> ParsedReply | None:
    if len(tcp) < 20 or (tcp[12] >> 4) < 5:
        return None
    flags = tcp[13]
    if not flags & TCP_ACK:
        return None  # an answer to a SYN acknowledges it (RFC 9293 section 3.10.7.2)
    if flags & TCP_RST:
        kind = ReplyKind.TCP_RST
    elif flags & TCP_SYN:
        kind = ReplyKind.TCP_SYNACK
    else:
        return None
    their_sport, their_dport = _U16.unpack_from(tcp, 0)[0], _U16.unpack_from(tcp, 2)[0]
    ident = tcp_ident((_U32.unpack_from(tcp, 8)[0] - 1) & 0xFFFFFFFF)
    if ident is None:
        return None
    return ParsedReply(kind, src, ttl, size, Protocol.TCP, src, their_dport, their_sport, ident)
