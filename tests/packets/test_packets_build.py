"""Probe bytes: Paris invariants, checksums (cross-checked with scapy), identity placement."""

from __future__ import annotations

import doctest
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP

import agent.net.allowlist
import agent.net.budget
import agent.net.clock
import agent.packets.build
import agent.packets.checksum
import agent.packets.icmpext
import agent.trace.flow
from agent.model import Protocol
from agent.packets.build import FlowSpec, ProbeBuilder, tcp_ident, tcp_seq
from agent.packets.checksum import compensate, inet_checksum, ones_sum
from agent.trace.flow import flow_spec, ident_sequence

DST, SRC = "198.19.178.10", "198.18.0.2"


def builder(protocol: Protocol, flow_id: int = 0, size: int = 0) -> ProbeBuilder:
    return ProbeBuilder(flow_spec(protocol, DST, flow_id, src=SRC, size=size))


def scapy_checksums_ok(packet: bytes) -> bool:
    """Let scapy recompute every checksum from scratch and compare with ours."""
    parsed = IP(packet)
    rebuilt = parsed.copy()
    del rebuilt.chksum
    layer = rebuilt.payload
    del layer.chksum
    again = IP(bytes(rebuilt))
    return bool(again.chksum == parsed.chksum and again.payload.chksum == parsed.payload.chksum)


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("size", [0, 44, 61, 128])
def test_checksums_are_correct(protocol: Protocol, size: int) -> None:
    b = builder(protocol, size=size)
    for ttl, ident in [(1, 1), (17, 0x1234), (255, 0xFFFF), (3, 0x8000)]:
        packet = b.build(ttl, ident)
        assert scapy_checksums_ok(packet)
        assert len(packet) == (44 if protocol is Protocol.TCP else size or 60)
        assert packet[8] == ttl and struct.unpack_from("!H", packet, 4)[0] == ident


def test_udp_flow_fields_and_checksum_are_constant_identity_in_ip_id_and_payload() -> None:
    b = builder(Protocol.UDP, flow_id=5)
    packets = [b.build(ttl, ident) for ttl in range(1, 33) for ident in (ttl, ttl + 1000, 65535 - ttl)]
    assert len({p[20:28] for p in packets}) == 1  # ports, length, checksum: one flow
    assert struct.unpack_from("!HH", packets[0], 20) == (61005, 33435)
    for p in packets:
        ident = struct.unpack_from("!H", p, 4)[0]
        assert struct.unpack_from("!HH", p, 28) == (ident, compensate(ident))
    assert UDP(packets[0][20:]).chksum == b.checksum


def test_icmp_identifier_and_checksum_constant_identity_in_sequence() -> None:
    b = builder(Protocol.ICMP, flow_id=2)
    packets = [b.build(ttl, ident) for ttl in range(1, 33) for ident in (ttl, 40000 + ttl)]
    assert len({p[20:26] for p in packets}) == 1  # type, code, checksum, identifier
    for p in packets:
        icmp = ICMP(p[20:])
        assert icmp.type == 8 and icmp.id == 0x4E02 and icmp.seq == struct.unpack_from("!H", p, 4)[0]


def test_tcp_ports_constant_identity_in_sequence_number() -> None:
    b = builder(Protocol.TCP, flow_id=1)
    packets = [b.build(ttl, ttl * 7) for ttl in range(1, 33)]
    assert len({p[20:24] for p in packets}) == 1
    for ttl, p in enumerate(packets, 1):
        tcp = TCP(p[20:])
        assert tcp.flags == "S" and tcp.dport == 80 and tcp.sport == 61001
        assert tcp_ident(tcp.seq) == ttl * 7 and ("MSS", 1460) in tcp.options


def test_different_flow_ids_differ_in_the_hashed_fields() -> None:
    for protocol in Protocol:
        heads = {builder(protocol, flow_id=i).build(1, 1)[20:24] for i in range(8)}
        assert len(heads) == 8, protocol


def test_tcp_sequence_codec_round_trips_every_identity() -> None:
    assert all(tcp_ident(tcp_seq(i)) == i for i in range(1, 65536))
    assert tcp_ident(0) is None and tcp_ident(tcp_seq(5) ^ 1) is None


def test_icmp_without_source_address_uses_zero_for_the_kernel_to_fill() -> None:
    packet = ProbeBuilder(FlowSpec(Protocol.ICMP, DST, 0x4E00, 0)).build(1, 1)
    assert packet[12:16] == bytes(4) and ones_sum(packet[:20]) == 0xFFFF


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": Protocol.UDP, "sport": 1, "dport": 2}, "source address"),
        ({"protocol": Protocol.ICMP, "sport": 70000, "dport": 0}, "0..65535"),
        ({"protocol": Protocol.ICMP, "sport": 1, "dport": 0, "size": 29}, "size"),
        ({"protocol": Protocol.ICMP, "sport": 1, "dport": 0, "size": 1501}, "size"),
        ({"protocol": Protocol.ICMP, "sport": 1, "dport": 0, "src": "2001:db8::1"}, "not an IPv4"),
        ({"protocol": Protocol.ICMP, "sport": 1, "dport": 0, "src": "nkp-vp"}, "not an IPv4"),
    ],
)
def test_invalid_flows_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FlowSpec(dst=DST, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ttl", "ident"), [(0, 1), (256, 1), (1, 0), (1, 65536)])
def test_out_of_range_ttl_or_identity_is_refused(ttl: int, ident: int) -> None:
    with pytest.raises(ValueError):
        builder(Protocol.UDP).build(ttl, ident)


def test_flow_ids_and_identities() -> None:
    with pytest.raises(ValueError):
        flow_spec(Protocol.UDP, DST, -1, src=SRC)
    with pytest.raises(ValueError):
        flow_spec(Protocol.TCP, DST, 10, src=SRC, port_base=65530)
    assert flow_spec(Protocol.UDP, DST, 0, src=SRC, port=53).dport == 53
    idents = [ident_sequence(12345, i) for i in range(65535)]
    assert len(set(idents)) == 65535 and 0 not in idents


def test_checksum_arithmetic() -> None:
    assert inet_checksum(b"\x00\x01\xf2") == ~ones_sum(b"\x00\x01\xf2\x00") & 0xFFFF
    for word in (0, 1, 0x1234, 0xFFFF):
        assert ones_sum(struct.pack("!HHH", 0x4500, word, compensate(word))) == 0x4500


@pytest.mark.parametrize(
    "module",
    [
        agent.packets.build,
        agent.packets.checksum,
        agent.packets.icmpext,
        agent.trace.flow,
        agent.net.budget,
        agent.net.clock,
        agent.net.allowlist,
    ],
)
def test_doctests(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.failed == 0 and result.attempted > 0
