"""The readable and JSON shapes of `trace` and `ping`, from synthetic results (no sockets)."""

from __future__ import annotations

from agent.commands.ping import line
from agent.commands.trace import render
from agent.formats.atlas_out import to_ripe_ping
from agent.model import Border, Classification, Hop, Path, PingResult, Protocol, Reply, ReplyKind
from agent.probers.base import ProbeSpec


def _path() -> Path:
    te = Reply("198.18.0.2", 0.0004, ReplyKind.TIME_EXCEEDED, reply_ttl=64)
    unreach = Reply("198.18.85.2", 0.0123, ReplyKind.UNREACHABLE, reply_ttl=62, icmp_type=3, icmp_code=1)
    return Path(
        "198.19.177.10", Protocol.TCP, 3, (Hop(1, (te,), 1), Hop(2, (), 2), Hop(3, (unreach,), 1)),
        reached=False, started_at=1.7e9, duration_s=0.5, src="198.18.0.1", dst_port=80,
        stop_reason="unreachable",
    )  # fmt: skip


def test_trace_render_shows_names_asns_stars_and_error_codes() -> None:
    tag = Classification(
        "transtelecom", Border(3, "198.18.85.2", 20485), (64512, 20485), ("hop 3 198.18.85.2 is AS20485",)
    )
    text = render(_path(), tag, {"198.18.0.2": "home.lab"}, {"198.18.0.2": 64512, "198.18.85.2": 20485})
    lines = text.splitlines()
    assert lines[0].startswith("traceroute to 198.19.177.10 (tcp port 80, paris id 3) from 198.18.0.1")
    assert lines[1] == "  1  198.18.0.2 (home.lab)  AS64512  0.400 ms"
    assert lines[2] == "  2  *  *"
    assert lines[3] == "  3  198.18.85.2  AS20485  12.300 ms !H"
    assert "destination not reached (unreachable)" in lines
    assert "upstream: transtelecom (border: hop 3 198.18.85.2 AS20485), confidence low" in lines
    assert "  - hop 3 198.18.85.2 is AS20485" in lines


def test_ping_lines_and_ripe_ping_json() -> None:
    ok = PingResult("198.19.176.10", Protocol.TCP, 1.7e9, 0.040, reply_ttl=59, extra={"flags": "SA"})
    lost = PingResult("198.19.176.10", Protocol.TCP, 1.7e9 + 1, None)
    prohibited = PingResult(
        "198.19.176.10", Protocol.TCP, 1.7e9 + 2, None, extra={"err": "A", "from": "10.0.0.1"}
    )
    assert line(1, ok) == "seq=1 from 198.19.176.10: ttl=59 flags=SA time=40.000 ms"
    assert line(2, lost) == "seq=2 no answer"
    assert line(3, prohibited) == "seq=3 !A from 10.0.0.1"
    obj = to_ripe_ping([ok, lost, prohibited], ProbeSpec("198.19.176.10", Protocol.TCP, port=80))
    # A refusal is a loss that says who refused, not a timeout (RIPE Atlas ping "error" and "srcaddr").
    assert obj["result"] == [
        {"rtt": 40.0},
        {"x": "*"},
        {"error": "ICMP destination unreachable 'A'", "srcaddr": "10.0.0.1"},
    ]
    assert (obj["sent"], obj["rcvd"], obj["min"], obj["ttl"]) == (3, 1, 40.0, 59)

    from ripe.atlas.sagan import PingResult as SaganPing

    parsed = SaganPing(obj, on_error=SaganPing.ACTION_FAIL)
    assert not parsed.is_error
    assert parsed.packets_sent == 3 and parsed.packets_received == 1 and parsed.rtt_min == 40.0
    assert [p.rtt for p in parsed.packets] == [40.0, None, None]
    assert parsed.packets[2].source_address == "10.0.0.1"
