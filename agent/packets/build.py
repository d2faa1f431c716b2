"""Build Paris traceroute probes as complete IPv4 packets (plain `struct`, no scapy: < 10 µs a probe).

Every probe of one flow carries identical flow fields, so per-flow load balancers (which hash the
addresses, the protocol and the first 4 bytes of the transport header, sometimes the ICMP checksum too)
keep it on one path (Augustin et al., "Avoiding traceroute anomalies with Paris traceroute", IMC 2006):

=========  ==============================================  ================================================
protocol   constant within a flow                           probe identity (`ident`, 16 bits, never 0)
=========  ==============================================  ================================================
UDP        ports, UDP length, **UDP checksum**             IP ID, and the first payload word; the second
                                                           payload word is `compensate(ident)` so the UDP
                                                           checksum stays constant
ICMP echo  type, code, identifier, **ICMP checksum**       sequence number (and IP ID); the first payload
                                                           word is `compensate(ident)`
TCP SYN    ports, flags, window, options                   sequence number `ident << 16 | ident ^ SALT`
                                                           (and IP ID); SYN-ACK/RST acks `seq + 1`
=========  ==============================================  ================================================

The identity is readable from what an ICMP error quotes: RFC 792 guarantees the IP header plus 8 bytes of
the transport header (UDP: IP ID; ICMP: sequence; TCP: sequence), RFC 1812 routers quote more.
The IP ID is never 0 because Linux fills in a zero IP ID on IP_HDRINCL sockets (raw(7)).

The bytes are for an ``AF_INET, SOCK_RAW, IPPROTO_RAW`` socket (IP_HDRINCL implied): ``sendto(data,
(dst, 0))``. Linux fills in the IP checksum and total length anyway; we compute them so the bytes are
correct as they stand (tests, captures). A source address of None is written as 0.0.0.0, which Linux
replaces with the route's source; that only works for ICMP, whose checksum does not cover the addresses:
UDP and TCP need the real source address for their pseudo-header checksum.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct

from agent.model import Protocol, Record, record
from agent.packets.checksum import inet_checksum, ones_sum

IPV4_HEADER_LEN = 20
UDP_HEADER_LEN = 8
ICMP_HEADER_LEN = 8
TCP_HEADER_LEN = 24  # 20 bytes plus the MSS option: some firewalls drop SYNs without one
TCP_SEQ_SALT = 0x4E4B  # "NK": the low half of a TCP probe's sequence number is `ident ^ TCP_SEQ_SALT`
TCP_MSS = 1460
TCP_WINDOW = 64240
IDENT_WORDS = 4  # bytes of payload the identity scheme needs (UDP: ident + compensation)

MIN_SIZE: dict[Protocol, int] = {
    Protocol.UDP: IPV4_HEADER_LEN + UDP_HEADER_LEN + 4,
    Protocol.ICMP: IPV4_HEADER_LEN + ICMP_HEADER_LEN + 2,
    Protocol.TCP: IPV4_HEADER_LEN + TCP_HEADER_LEN,
}
DEFAULT_SIZE: dict[Protocol, int] = {
    Protocol.UDP: 60,  # traceroute(8)'s default packet length
    Protocol.ICMP: 60,
    Protocol.TCP: IPV4_HEADER_LEN + TCP_HEADER_LEN,  # a SYN carries no payload
}

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
# The IPv4 header, the UDP or ICMP header and the two identity words, in one pack per probe.
_IP_UDP_IDENT = struct.Struct("!BBHHHBBH4s4sHHHHHH")
_IP_ICMP_IDENT = struct.Struct("!BBHHHBBH4s4sBBHHHH")
# The IPv4 header, the TCP header and its MSS option (kind 2, length 4, value).
_IP_TCP = struct.Struct("!BBHHHBBH4s4sHHIIBBHHHBBH")


@record(slots=True)
class FlowSpec(Record):
    """The constant fields of one Paris flow: everything a load balancer may hash.

    `sport` is the UDP/TCP source port, or the ICMP echo identifier; `dport` is the UDP/TCP destination
    port, 0 for ICMP. `size` is the total IPv4 length of every probe (fixed at 44 for TCP).
    """

    protocol: Protocol
    dst: str
    sport: int
    dport: int
    src: str | None = None
    size: int = 0  # 0: DEFAULT_SIZE[protocol]
    tos: int = 0

    def __post_init__(self) -> None:
        for address in (self.dst, self.src):
            if address is not None and not _is_ipv4(address):
                raise ValueError(f"{address!r} is not an IPv4 address (IPv6 probes are not implemented yet)")
        if not 0 <= self.sport <= 0xFFFF or not 0 <= self.dport <= 0xFFFF:
            raise ValueError(f"ports/identifier must be 0..65535, got {self.sport}/{self.dport}")
        if self.protocol is not Protocol.ICMP and self.src is None:
            raise ValueError(f"a {self.protocol} probe needs its source address for the checksum")
        size = self.effective_size
        if size < MIN_SIZE[self.protocol] or size > 1500:
            raise ValueError(f"{self.protocol} probe size must be {MIN_SIZE[self.protocol]}..1500")

    @property
    def effective_size(self) -> int:
        if self.protocol is Protocol.TCP:
            return DEFAULT_SIZE[Protocol.TCP]
        return self.size or DEFAULT_SIZE[self.protocol]


@functools.lru_cache(maxsize=4096)  # a few dozen targets, checked at every trace's start
def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


def tcp_seq(ident: int) -> int:
    """The TCP sequence number that carries `ident`; its low half is a check word.

    >>> hex(tcp_seq(0x0102))
    '0x1024f49'
    """
    return (ident << 16) | (ident ^ TCP_SEQ_SALT)


def tcp_ident(seq: int) -> int | None:
    """The identity carried by a TCP sequence number, or None if it is not one of ours.

    >>> tcp_ident(tcp_seq(7))
    7
    >>> tcp_ident(12345) is None
    True
    """
    ident = (seq >> 16) & 0xFFFF
    if ident == 0 or (seq & 0xFFFF) != ident ^ TCP_SEQ_SALT:
        return None
    return ident


class ProbeBuilder:
    """Builds the probes of one flow; everything constant is computed once, in the constructor.

    >>> b = ProbeBuilder(FlowSpec(Protocol.ICMP, "198.19.176.10", sport=0x4E4B, dport=0))
    >>> p1, p2 = b.build(ttl=1, ident=1), b.build(ttl=2, ident=2)
    >>> len(p1), p1[22:24] == p2[22:24]  # same length, same ICMP checksum
    (60, True)
    """

    def __init__(self, flow: FlowSpec) -> None:
        self.flow = flow
        self._src = socket.inet_aton(flow.src) if flow.src is not None else b"\x00\x00\x00\x00"
        self._dst = socket.inet_aton(flow.dst)
        self._size = flow.effective_size
        self._proto = {Protocol.UDP: socket.IPPROTO_UDP, Protocol.ICMP: socket.IPPROTO_ICMP}.get(
            flow.protocol, socket.IPPROTO_TCP
        )
        # The IP header sum without TTL/protocol word and ID: added per probe.
        fixed = _IP.pack(0x45, flow.tos, self._size, 0, 0, 0, 0, 0, self._src, self._dst)
        self._ip_partial = ones_sum(fixed)
        self._pseudo = self._src + self._dst + struct.pack("!BBH", 0, self._proto, self._size - 20)
        transport_len = self._size - IPV4_HEADER_LEN
        if flow.protocol is Protocol.UDP:
            self._pad = bytes(transport_len - UDP_HEADER_LEN - IDENT_WORDS)
            # ident + compensate(ident) is negative zero, so the checksum equals that of a zero payload.
            body = struct.pack("!HHHH", flow.sport, flow.dport, transport_len, 0) + bytes(transport_len - 8)
            csum = inet_checksum(self._pseudo + body)
            self.checksum = csum or 0xFFFF  # RFC 768: a computed 0 is sent as all ones
            # The transport fields after the IP header, all constant but the two identity words.
            self._head: tuple[int, ...] = (flow.sport, flow.dport, transport_len, self.checksum)
            self._pack = _IP_UDP_IDENT.pack
        elif flow.protocol is Protocol.ICMP:
            self._pad = bytes(transport_len - ICMP_HEADER_LEN - 2)
            # seq (= ident) + compensate(ident) is negative zero: the checksum of seq 0, zero payload.
            echo = struct.pack("!BBHHH", 8, 0, 0, flow.sport, 0)
            self.checksum = inet_checksum(echo + bytes(transport_len - 8))
            self._head = (8, 0, self.checksum, flow.sport)
            self._pack = _IP_ICMP_IDENT.pack
        else:
            self._pad = b""
            self.checksum = 0  # varies with the sequence number; TCP's checksum is not hashed
            self._head = ()
            # The one's-complement sum of everything the TCP checksum covers but the sequence number
            # (RFC 9293 section 3.1: pseudo-header, header, options); each probe adds its two words.
            header = _TCP.pack(flow.sport, flow.dport, 0, 0, (TCP_HEADER_LEN // 4) << 4, 0x02,
                               TCP_WINDOW, 0, 0)  # fmt: skip
            self._tcp_partial = ones_sum(self._pseudo + header + struct.pack("!BBH", 2, 4, TCP_MSS))

    def build(self, ttl: int, ident: int) -> bytes:
        """The whole IPv4 packet of the probe with this TTL and identity (1..65535)."""
        if not 0 < ident <= 0xFFFF or not 0 < ttl <= 255:
            raise ValueError(f"ident must be 1..65535 and ttl 1..255, got {ident}, {ttl}")
        total = self._ip_partial + ((ttl << 8) | self._proto) + ident
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        if self._head:
            # UDP: ports, length, checksum, then ident and compensate(ident) as the first payload words;
            # ICMP: type, code, checksum, identifier, then ident as the sequence and compensate(ident).
            # (~ident & 0xFFFF is checksum.compensate, inlined: this runs once per probe.)
            packet = self._pack(0x45, self.flow.tos, self._size, ident, 0, ttl, self._proto, ~total & 0xFFFF,
                                self._src, self._dst, *self._head, ident, ~ident & 0xFFFF)  # fmt: skip
            return packet + self._pad
        flow = self.flow
        seq = tcp_seq(ident)
        csum = self._tcp_partial + (seq >> 16) + (seq & 0xFFFF)
        csum = (csum & 0xFFFF) + (csum >> 16)
        csum = (csum & 0xFFFF) + (csum >> 16)
        return _IP_TCP.pack(0x45, flow.tos, self._size, ident, 0, ttl, self._proto, ~total & 0xFFFF,
                            self._src, self._dst, flow.sport, flow.dport, seq, 0, (TCP_HEADER_LEN // 4) << 4,
                            0x02, TCP_WINDOW, ~csum & 0xFFFF, 0, 2, 4, TCP_MSS)  # fmt: skip


@functools.lru_cache(maxsize=256)
def builder_for(flow: FlowSpec) -> ProbeBuilder:
    """The (immutable) builder of `flow`, shared: every round of a flow probes with the same constants,
    and a builder costs about as much to make as a whole trace's probes cost to build."""
    return ProbeBuilder(flow)


def build_probe(flow: FlowSpec, ttl: int, ident: int) -> bytes:
    """One probe's bytes; a convenience over `ProbeBuilder` for callers that build a single packet."""
    return ProbeBuilder(flow).build(ttl, ident)
