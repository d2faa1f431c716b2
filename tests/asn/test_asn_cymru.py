"""agent.asn.cymru: the DNS fallback with fake resolvers and hand-built packets; no network."""

from __future__ import annotations

import struct

import pytest

from agent.asn import builtin_table
from agent.asn.cymru import (
    CymruLookup,
    build_query,
    origin_name,
    parse_origin,
    parse_txt_answer,
    with_fallback,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ANSWERS = {
    "254.255.35.103.origin.asn.cymru.com": ["134544 | 103.35.252.0/22 | HK | apnic | 2019-01-01"],
    "10.0.0.192.origin.asn.cymru.com": [],
}


def test_prefetch_caches_and_the_fallback_reads_only_the_cache() -> None:
    asked: list[str] = []
    clock = Clock()

    def resolver(name: str, timeout: float) -> list[str]:
        asked.append(name)
        assert timeout == 2.0
        if name not in ANSWERS:
            raise OSError("timed out")
        return ANSWERS[name]

    cymru = CymruLookup(resolver, clock=clock, ttl_s=100, negative_ttl_s=10)
    lookup = with_fallback(builtin_table().lookup, cymru)
    assert lookup("103.35.255.254") is None  # nothing asked yet: the classifier never waits for DNS
    assert asked == []
    assert cymru.prefetch(["103.35.255.254", "192.0.0.10", "198.51.100.1", "103.35.255.254", "nonsense"]) == 3
    m = lookup("103.35.255.254")
    assert m is not None and (m.asn, m.prefix, m.source) == (134544, "103.35.252.0/22", "Team Cymru DNS")
    assert lookup("188.43.225.153").source == "built-in"  # type: ignore[union-attr]  # table first
    assert cymru.failures == 1
    assert cymru.prefetch(["103.35.255.254", "192.0.0.10"]) == 0  # cached, the empty answer too
    clock.now = 11
    assert (
        cymru.prefetch(["103.35.255.254", "192.0.0.10", "198.51.100.1"]) == 2
    )  # negative expired, failure retried
    assert with_fallback(builtin_table().lookup, None)("103.35.255.254") is None


def test_origin_name_and_txt_parsing() -> None:
    assert origin_name("188.43.225.153") == "153.225.43.188.origin.asn.cymru.com"
    with pytest.raises(ValueError):
        origin_name("2001:db8::1")
    assert parse_origin('"20485 | 188.43.0.0/16 | RU | ripencc | 2009-09-24"').asn == 20485  # type: ignore[union-attr]
    assert parse_origin("garbage") is None
    assert parse_origin("AS20485 | 188.43.0.0/16 | RU") is None


def _response(query_id: int, name: str, txts: list[bytes], rcode: int = 0) -> bytes:
    q = build_query(name, query_id)[12:]
    answers = b""
    for txt in txts:
        rdata = bytes([len(txt)]) + txt
        answers += b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 300, len(rdata)) + rdata
    header = struct.pack("!HHHHHH", query_id, 0x8180 | rcode, 1, len(txts), 0, 0)
    return header + q + answers


def test_dns_packets_round_trip() -> None:
    name = "42.39.158.219.origin.asn.cymru.com"
    query = build_query(name, 0x1234)
    assert query[:2] == b"\x12\x34" and query.endswith(b"\x00\x00\x10\x00\x01")
    data = _response(0x1234, name, [b"4837 | 219.158.32.0/20 | CN | apnic | 2002-06-03"])
    assert parse_txt_answer(data, 0x1234) == ["4837 | 219.158.32.0/20 | CN | apnic | 2002-06-03"]
    assert parse_txt_answer(_response(0x1234, name, [], rcode=3), 0x1234) == []
    with pytest.raises(ValueError, match="not the response"):
        parse_txt_answer(data, 0x9999)
    with pytest.raises(ValueError, match="rcode 2"):
        parse_txt_answer(_response(0x1234, name, [], rcode=2), 0x1234)
    with pytest.raises(ValueError):
        parse_txt_answer(data[:-10], 0x1234)
