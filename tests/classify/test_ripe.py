"""agent.formats.atlas_out and atlas_in: our paths in RIPE Atlas' traceroute format, read back by us and
by ripe.atlas.sagan."""

from __future__ import annotations

import json
import logging
from pathlib import Path as FsPath
from typing import Any

import pytest
from ripe.atlas.sagan import TracerouteResult

from agent.errors import InputError
from agent.formats.atlas_in import classification_from_ripe, from_ripe
from agent.formats.atlas_out import to_ripe
from agent.model import Border, Classification, Hop, MplsLabel, Path, Protocol, Reply, ReplyKind

FIXTURES = FsPath(__file__).parent.parent / "fixtures" / "ripe"


def _te(addr: str, rtt_ms: float, **kw: Any) -> Reply:
    return Reply(
        addr, rtt_ms / 1000, ReplyKind.TIME_EXCEEDED, reply_ttl=250, icmp_type=11, icmp_code=0, size=76, **kw
    )


def _sample(protocol: Protocol = Protocol.ICMP) -> Path:
    mpls = (MplsLabel(label=24008, exp=0, bottom=True, ttl=1),)
    end = {
        Protocol.ICMP: Reply(
            "175.45.177.10", 0.1905, ReplyKind.ECHO_REPLY, reply_ttl=52, icmp_type=0, size=84
        ),
        Protocol.UDP: Reply(
            "175.45.177.10", 0.1905, ReplyKind.UNREACHABLE, reply_ttl=52, icmp_type=3, icmp_code=3, size=56
        ),
        Protocol.TCP: Reply("175.45.177.10", 0.1905, ReplyKind.TCP_SYNACK, reply_ttl=52, size=44),
    }[protocol]
    hops = (
        Hop(1, (_te("192.168.1.1", 0.512), _te("192.168.1.1", 0.498)), 2),
        Hop(2, (_te("10.99.99.5", 41.2, mpls=mpls),), 2),
        Hop(3, (), 2),
        Hop(4, (_te("188.43.225.153", 180.25, quoted_ttl=2),), 2),
        Hop(5, (end,), 2),
    )
    return Path(
        "175.45.177.10",
        protocol,
        4242,
        hops,
        True,
        1764806400.0,
        3.7,
        src="192.168.1.20",
        dst_port=None if protocol is Protocol.ICMP else 80,
        packet_size=48,
        stop_reason="reached",
    )


@pytest.mark.parametrize("protocol", list(Protocol))
def test_sagan_reads_ours_without_errors_and_sees_the_same_hops(
    protocol: Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    path = _sample(protocol)
    cls = Classification(
        "transtelecom", Border(4, "188.43.225.153", 20485), (20485, 131279), ("hop 4 ...",), "high"
    )
    obj = json.loads(
        json.dumps(
            to_ripe(path, cls, {"188.43.225.153": "kp-gw.transtelecom.net"}, {"188.43.225.153": 20485})
        )
    )
    with caplog.at_level(logging.WARNING):
        result = TracerouteResult(
            obj, on_error=TracerouteResult.ACTION_FAIL, on_malformation=TracerouteResult.ACTION_FAIL
        )
    assert not result.is_error and not result.is_malformed
    assert caplog.records == []
    assert result.protocol == protocol.value.upper()
    assert result.destination_address == "175.45.177.10"
    assert result.paris_id == 4242
    assert result.total_hops == 5
    assert result.destination_ip_responded and result.is_success
    ours = [[r.address for r in h.replies] for h in path.hops]
    theirs = [[p.origin for p in h.packets if p.origin] for h in result.hops]
    assert theirs == ours
    assert [[p.rtt for p in h.packets if p.rtt] for h in result.hops] == [
        [round(r.rtt_s * 1000, 3) for r in h.replies] for h in path.hops
    ]
    assert obj["result"][3]["result"][0]["hostname"] == "kp-gw.transtelecom.net"
    assert obj["result"][3]["result"][0]["asn"] == 20485
    assert obj["result"][3]["result"][0]["ittl"] == 2
    assert obj["result"][1]["result"][0]["icmpext"]["obj"][0]["mpls"][0]["label"] == 24008
    assert obj["result"][2]["result"] == [{"x": "*"}, {"x": "*"}]
    assert obj["nkprobe"] == {
        "upstream": "transtelecom",
        "border": {"hop": 4, "from": "188.43.225.153", "asn": 20485},
        "as_path": [20485, 131279],
        "evidence": ["hop 4 ..."],
        "confidence": "high",
    }


@pytest.mark.parametrize("protocol", list(Protocol))
def test_round_trip_keeps_hops_rtts_kinds_and_mpls(protocol: Protocol) -> None:
    path = _sample(protocol)
    back = from_ripe(json.loads(json.dumps(to_ripe(path))))
    assert back.target == path.target and back.protocol is protocol and back.flow_id == 4242
    assert back.reached and back.src == path.src and back.dst_port == path.dst_port
    assert back.started_at == 1764806400.0 and back.duration_s == 3.0  # RIPE writes whole seconds
    assert [h.ttl for h in back.hops] == [1, 2, 3, 4, 5]
    assert [h.probes_sent for h in back.hops] == [2, 2, 2, 2, 2]
    for ours, theirs in zip(path.hops, back.hops, strict=True):
        assert [(r.address, r.kind, r.reply_ttl, r.size, r.mpls) for r in theirs.replies] == [
            (r.address, r.kind, r.reply_ttl, r.size, r.mpls) for r in ours.replies
        ]
        assert [r.rtt_s for r in theirs.replies] == pytest.approx([r.rtt_s for r in ours.replies])
    assert back.hops[3].replies[0].quoted_ttl == 2


def test_icmp_errors_are_written_as_ripe_letters_and_read_back() -> None:
    xx = Reply(
        "219.158.39.42", 0.05, ReplyKind.UNREACHABLE, reply_ttl=240, icmp_type=3, icmp_code=13, size=56
    )
    nn = Reply("219.158.39.43", 0.05, ReplyKind.UNREACHABLE, reply_ttl=240, icmp_type=3, icmp_code=0, size=56)
    odd = Reply(
        "219.158.39.44", 0.05, ReplyKind.UNREACHABLE, reply_ttl=240, icmp_type=3, icmp_code=7, size=56
    )
    path = Path("175.45.176.71", Protocol.UDP, 1, (Hop(1, (xx, nn, odd), 3),), False, 0.0, 1.0)
    obj = to_ripe(path)
    assert [r["err"] for r in obj["result"][0]["result"]] == ["A", "N", 7]
    back = from_ripe(obj)
    assert not back.reached and back.stop_reason == "unreachable"
    assert [r.err for r in back.hops[0].replies] == ["A", "N", "7"]
    result = TracerouteResult(obj)
    assert not result.is_error
    assert result.hops[0].packets[0].is_error  # sagan flags the packet, not the result


def test_reads_real_ripe_atlas_oddities() -> None:
    obj = {
        "fw": 4790,
        "lts": 12,
        "endtime": 1764806410,
        "dst_name": "175.45.176.71",
        "dst_addr": "175.45.176.71",
        "src_addr": "192.168.178.20",
        "proto": "TCP",
        "af": 4,
        "size": 0,
        "paris_id": 3,
        "msm_id": 5051,
        "prb_id": 6001,
        "timestamp": 1764806400,
        "msm_name": "Traceroute",
        "from": "93.184.216.1",
        "type": "traceroute",
        "group_id": 5051,
        "result": [
            {
                "hop": 1,
                "result": [
                    {"from": "192.168.178.1", "ttl": 64, "size": 68, "rtt": 0.9},
                    {"from": "192.168.178.1", "ttl": 64, "size": 68, "rtt": 0.8, "dup": True},
                    {"x": "*"},
                ],
            },
            {"hop": 2, "error": "sendto: No route to host"},
            {
                "hop": 3,
                "result": [
                    {
                        "from": "10.99.99.1",
                        "ttl": 253,
                        "size": 140,
                        "rtt": 40.1,
                        "ittl": 0,
                        "icmpext": {
                            "version": 2,
                            "rfc4884": 1,
                            "obj": [
                                {"class": 1, "type": 1, "mpls": [{"exp": 0, "label": 16, "s": 1, "ttl": 1}]}
                            ],
                        },
                    },
                    {"late": 2, "from": "10.99.99.1", "ttl": 253, "size": 140},
                    {"from": "10.99.99.1", "ttl": 253, "size": 140, "rtt": "41.0", "edst": "175.45.176.71"},
                ],
            },
            {
                "hop": 4,
                "result": [
                    {
                        "from": "175.45.176.71",
                        "ttl": 50,
                        "size": 44,
                        "rtt": 290.1,
                        "flags": "SA",
                        "hdropts": [{"mss": 1460}],
                    }
                ],
            },
            {"hop": 255, "result": [{"x": "*"}]},
        ],
    }
    path = from_ripe(obj)
    assert [h.ttl for h in path.hops] == [1, 2, 3, 4, 255]
    assert [len(h.replies) for h in path.hops] == [1, 0, 2, 1, 0]
    assert path.hops[2].replies[0].mpls == (MplsLabel(16, 0, True, 1),)
    assert path.hops[3].replies[0].kind is ReplyKind.TCP_SYNACK
    assert not path.reached  # the last line is the 255 marker; reached means the last hop answered
    assert path.src == "192.168.178.20" and path.duration_s == 10.0


def test_missing_fields_are_tolerated() -> None:
    path = from_ripe({"dst_addr": "175.45.176.71", "result": [{"result": [{"x": "*"}]}]})
    assert path.protocol is Protocol.ICMP and path.hops[0].ttl == 1 and path.hops[0].silent


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ([], "JSON object"),
        ({"type": "ping", "dst_addr": "1.2.3.4"}, "not a traceroute"),
        ({"type": "traceroute"}, "dst_addr"),
        ({"dst_addr": "kcna.kp", "result": []}, "not an IP address"),
        ({"dst_addr": "1.2.3.4", "proto": "SCTP", "result": []}, "proto"),
        ({"dst_addr": "1.2.3.4", "result": "x"}, "legacy"),
        (
            {"dst_addr": "1.2.3.4", "result": [{"hop": 1, "result": [{"from": "1.2.3.4", "rtt": "fast"}]}]},
            "rtt",
        ),
        ({"dst_addr": "1.2.3.4", "result": [{"hop": 1, "result": [{"from": "nowhere", "rtt": 1}]}]}, "from"),
    ],
)
def test_malformed_input_is_input_error(obj: Any, words: str) -> None:
    with pytest.raises(InputError, match=words):
        from_ripe(obj)


def test_classification_round_trip() -> None:
    cls = Classification("china_unicom", Border(9, "103.35.255.254", None), (4837, None, 131279), ("a", "b"))
    path = _sample()
    assert classification_from_ripe(to_ripe(path, cls)) == cls
    assert classification_from_ripe(to_ripe(path)) is None


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_parses_in_sagan_and_ours(name: str) -> None:
    obj = json.loads((FIXTURES / name).read_text())
    result = TracerouteResult(obj)
    assert not result.is_error and not result.is_malformed
    path = from_ripe(obj)
    assert [[r.address for r in h.replies] for h in path.hops] == [
        [p.origin for p in h.packets if p.origin and p.rtt is not None] for h in result.hops
    ]
