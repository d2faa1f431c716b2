"""Reply parsing: round trips build -> reply -> parse, RFC 4884/4950 extensions, refusals."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP

from agent.lab import synth
from agent.model import MplsLabel, Protocol, ReplyKind
from agent.packets.build import ProbeBuilder, tcp_seq
from agent.packets.checksum import inet_checksum
from agent.packets.icmpext import build_mpls_extension, split_icmp_payload
from agent.packets.parse import MatchKey, match_key, parse
from agent.trace.flow import flow_spec

DST, SRC, ROUTER = "198.19.177.10", "198.18.0.2", "198.18.5.1"


def probe(protocol: Protocol, ttl: int = 7, ident: int = 0x2345, flow_id: int = 3) -> bytes:
    return ProbeBuilder(flow_spec(protocol, DST, flow_id, src=SRC)).build(ttl, ident)


def expected_key(protocol: Protocol, ident: int = 0x2345, flow_id: int = 3) -> MatchKey:
    flow = flow_spec(protocol, DST, flow_id, src=SRC)
    return MatchKey(protocol, DST, (flow.sport, flow.dport), ident)


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("quote", [8, 12, None])
def test_time_exceeded_round_trip(protocol: Protocol, quote: int | None) -> None:
    reply = parse(synth.icmp_error(probe(protocol), ROUTER, quote=quote, quoted_ttl=1, ttl=243))
    assert reply is not None and match_key(reply) == expected_key(protocol)
    assert reply.kind is ReplyKind.TIME_EXCEEDED and reply.src == ROUTER
    assert (reply.icmp_type, reply.icmp_code, reply.quoted_ttl, reply.reply_ttl) == (11, 0, 1, 243)
    assert reply.mpls == ()


@pytest.mark.parametrize("protocol", list(Protocol))
@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("quote", [8, None])
def test_mpls_label_stack_extension(protocol: Protocol, compat: bool, quote: int | None) -> None:
    stack = [(24001, 0, False, 1), (16005, 5, True, 254)]
    packet = synth.icmp_error(probe(protocol), ROUTER, quote=quote, mpls=stack, compat=compat)
    reply = parse(packet)
    assert reply is not None and match_key(reply) == expected_key(protocol)
    assert reply.mpls == (MplsLabel(24001, 0, False, 1), MplsLabel(16005, 5, True, 254))


def test_extension_with_bad_checksum_at_the_guessed_offset_is_ignored_but_reply_kept() -> None:
    packet = bytearray(synth.icmp_error(probe(Protocol.UDP), ROUTER, mpls=[(1, 0, True, 1)], compat=True))
    packet[-1] ^= 0xFF  # corrupt the label entry: the extension checksum fails
    reply = parse(bytes(packet))
    assert reply is not None and reply.mpls == () and reply.ident == 0x2345


def test_compliant_extension_with_zero_checksum_and_truncated_object() -> None:
    ext = bytearray(build_mpls_extension([(100, 0, False, 1), (200, 0, True, 1)]))
    ext[2:4] = b"\x00\x00"
    icmp = bytes([11, 0, 0, 0, 0, 32, 0, 0]) + bytes(128) + bytes(ext)
    assert [m.label for m in split_icmp_payload(icmp)[1]] == [100, 200]
    ext[4:6] = (400).to_bytes(2, "big")  # object longer than the packet: nothing trusted past it
    assert split_icmp_payload(bytes([11, 0, 0, 0, 0, 32, 0, 0]) + bytes(128) + bytes(ext))[1] == ()
    assert split_icmp_payload(bytes([11, 0, 0, 0, 0, 200, 0, 0]) + bytes(20)) == (bytes(20), ())


def test_unreachable_codes_are_kept() -> None:
    for code in (0, 1, 3, 9, 10, 13):
        reply = parse(synth.icmp_error(probe(Protocol.UDP), ROUTER, icmp_type=3, code=code))
        assert reply is not None and reply.kind is ReplyKind.UNREACHABLE and reply.icmp_code == code


def test_echo_reply_and_tcp_answers() -> None:
    echo = parse(synth.echo_reply(probe(Protocol.ICMP), ttl=55))
    assert echo is not None and echo.kind is ReplyKind.ECHO_REPLY and echo.reply_ttl == 55
    assert match_key(echo) == expected_key(Protocol.ICMP) and echo.src == DST and echo.quoted_ttl is None
    for rst, kind in [(False, ReplyKind.TCP_SYNACK), (True, ReplyKind.TCP_RST)]:
        answer = parse(synth.tcp_answer(probe(Protocol.TCP), rst=rst))
        assert answer is not None and answer.kind is kind and match_key(answer) == expected_key(Protocol.TCP)


def test_replies_built_by_scapy_parse_the_same() -> None:
    """An independent construction of the packets a router and a host send."""
    udp = probe(Protocol.UDP)
    te = IP(src=ROUTER, dst=SRC, ttl=240) / ICMP(type=11, code=0) / udp[:28]
    reply = parse(bytes(te))
    assert reply is not None and match_key(reply) == expected_key(Protocol.UDP) and reply.reply_ttl == 240
    syn = probe(Protocol.TCP)
    sport, dport, seq = struct.unpack_from("!HHI", syn, 20)
    synack = IP(src=DST, dst=SRC) / TCP(sport=dport, dport=sport, flags="SA", seq=99, ack=seq + 1)
    answer = parse(bytes(synack))
    assert answer is not None and match_key(answer) == expected_key(Protocol.TCP)
    echo = probe(Protocol.ICMP)
    ident, seqno = struct.unpack_from("!HH", echo, 24)
    answer = parse(bytes(IP(src=DST, dst=SRC) / ICMP(type=0, id=ident, seq=seqno) / echo[28:]))
    assert answer is not None and match_key(answer) == expected_key(Protocol.ICMP)


def test_udp_identity_survives_ip_id_rewriting_when_the_payload_is_quoted() -> None:
    rewritten = bytearray(probe(Protocol.UDP))
    rewritten[4:6] = b"\x99\x99"
    full = parse(synth.icmp_error(bytes(rewritten), ROUTER, quote=None))
    short = parse(synth.icmp_error(bytes(rewritten), ROUTER, quote=8))
    assert full is not None and full.ident == 0x2345
    assert short is not None and short.ident == 0x9999  # only the IP ID was quoted: no longer our probe


def _with_ip_checksum(packet: bytearray) -> bytes:
    packet[10:12] = b"\x00\x00"
    packet[10:12] = inet_checksum(bytes(packet[:20])).to_bytes(2, "big")
    return bytes(packet)


def test_refusals() -> None:
    udp, tcp, icmp = probe(Protocol.UDP), probe(Protocol.TCP), probe(Protocol.ICMP)
    te = synth.icmp_error(udp, ROUTER)
    refused = {
        "empty": b"",
        "ipv6": b"\x60" + te[1:],
        "short ihl": b"\x44" + te[1:],
        "truncated": te[:-1],
        "quote too short": synth.icmp_error(udp, ROUTER, quote=7),
        "reassembly timeout": synth.icmp_error(udp, ROUTER, code=1),
        "echo request": icmp,
        "our own syn": tcp,
        "redirect": synth.icmp_error(udp, ROUTER, icmp_type=5),
        "quoted echo reply": synth.icmp_error(synth.echo_reply(icmp), ROUTER),
        "tcp ack mismatch": synth.tcp_answer(tcp, ack_delta=2),
        "quoted foreign tcp seq": synth.icmp_error(
            tcp[:24] + (tcp_seq(5) ^ 0x10000).to_bytes(4, "big") + tcp[28:], ROUTER
        ),
        "udp carried": synth.ipv4(DST, SRC, 17, bytes(16)),
    }
    fragment = bytearray(te)
    fragment[6] = 0x20  # more fragments
    refused["fragment"] = _with_ip_checksum(fragment)
    offset = bytearray(te)
    offset[7] = 0x10
    refused["later fragment"] = _with_ip_checksum(offset)
    rst_no_ack = bytearray(synth.tcp_answer(tcp, rst=True))
    rst_no_ack[33] = 0x04
    refused["rst without ack"] = bytes(rst_no_ack)
    seq_zero = bytearray(synth.echo_reply(icmp))
    seq_zero[26:28] = b"\x00\x00"
    refused["echo seq 0"] = bytes(seq_zero)
    for name, packet in refused.items():
        assert parse(packet) is None, name


def test_trailing_link_padding_is_ignored() -> None:
    reply = parse(synth.echo_reply(probe(Protocol.ICMP)) + bytes(6))
    assert reply is not None and reply.size == 60


@pytest.mark.parametrize("protocol", [Protocol.UDP, Protocol.ICMP])
def test_an_answer_quoting_the_first_fragment_of_a_big_probe_is_kept(protocol: Protocol) -> None:
    # Our probes do not set DF: a 1500-byte probe meeting a 1400-byte MTU is split, and routers beyond
    # that link answer its first fragment, which they quote with MF set and offset 0. A quoted later
    # fragment (no transport header) is still refused.
    big = ProbeBuilder(flow_spec(protocol, DST, 3, src=SRC, size=1500)).build(7, 0x2345)
    first = bytearray(big[:1396])
    first[2:4] = (1396).to_bytes(2, "big")
    first[6] = 0x20  # more fragments, offset 0
    reply = parse(synth.icmp_error(bytes(first), ROUTER, quote=None))
    assert reply is not None and match_key(reply) == expected_key(protocol)
    later = bytearray(first)
    later[6:8] = (0x2000 | 172).to_bytes(2, "big")  # the fragment at byte 1376
    assert parse(synth.icmp_error(bytes(later), ROUTER, quote=None)) is None
