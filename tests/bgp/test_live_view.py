"""The live BGP view's core (agent.bgp.live), stepped by numbers: a RIPEstat baseline, the hand-written
2017-10-01-like RIS Live sequence (tests/fixtures/bgp/README.md), and every kind of bad message."""

from __future__ import annotations

import ipaddress
import math

import pytest

from agent.bgp.live import LiveView, RipestatState
from agent.bgp.ripestat import Route
from agent.config import DEFAULT_UPSTREAMS
from tests.support.ristest import CU, DEST_ASN, PEERS, SLASH24S, TTK, baseline, sequence_2017, update

P176, P177, P178, P179 = SLASH24S
T0 = 1506848880.0  # 2017-10-01 09:08 UTC


def _state(routes: dict[tuple[str, str], dict[str, str]] | None = None, **kw: object) -> RipestatState:
    routes = baseline() if routes is None else routes
    flat = tuple(
        Route(ipaddress.IPv4Network(p), tuple(int(a) for a in path.split()), c, ip)
        for (c, ip), table in routes.items()
        for p, path in table.items()
    )
    seeing = kw.get("seeing", dict.fromkeys(SLASH24S, (300, 320)))
    rpki = kw.get("rpki", dict.fromkeys(SLASH24S, "valid"))
    return RipestatState(flat, seeing, rpki)  # type: ignore[arg-type]


def _view() -> LiveView:
    return LiveView(DEST_ASN, ["175.45.176.0/22"], DEFAULT_UPSTREAMS)


def _ups(view: LiveView) -> dict[str, set[str]]:
    return {p.prefix: set(p.upstreams) for p in view.prefixes}


def test_before_any_data_every_figure_is_unknown() -> None:
    view = _view()
    p = view.get(P176)
    assert p is not None and p.peers == 0 and p.visibility is None and p.rpki is None
    assert set(p.shares) == {"china_unicom", "transtelecom", "other", "unknown"}
    assert view.in_bgp(P176, "china_unicom") is None


def test_the_first_ripestat_state_is_the_baseline_not_a_change() -> None:
    view = _view()
    # An update that comes before the first state (the stream connected first) is applied, not reported.
    early = update(PEERS[0], (3333, CU, DEST_ASN), announce=[P177])
    assert view.apply_message(early, T0) == ("applied", [])
    assert view.apply_state(_state(), T0) == []
    assert _ups(view) == {key: {"china_unicom"} for key in SLASH24S}
    p = view.get(P177)
    assert p is not None and p.peers == 3 and p.shares["china_unicom"] == 1.0 and p.rpki == "valid"
    assert p.visibility == 300 / 320 and p.last_change is None and p.neighbours == {CU}
    assert view.in_bgp(P177, "china_unicom") is True and view.in_bgp(P177, "transtelecom") is False


def test_the_2017_sequence_ttk_appears_on_three_then_stays_on_one() -> None:
    view = _view()
    view.apply_state(_state(), T0 - 3600)
    outcomes, changes = [], []
    for i, message in enumerate(sequence_2017()):
        outcome, step = view.apply_message(message, T0 + i)
        outcomes.append(outcome)
        changes.append([(c.prefix, c.kind, sorted(c.new)) for c in step])
    assert outcomes == ["ignored", "applied", "applied", "ignored", "applied", "applied"]
    both = ["china_unicom", "transtelecom"]
    # TTK appears for .176, .178 and .179 with the first peer; the second peer changes no set.
    assert changes[1] == [(P176, "upstreams", both), (P178, "upstreams", both), (P179, "upstreams", both)]
    assert changes[2] == []
    # An hour later one peer goes back to AS4837 and the other withdraws: TTK leaves .176 and .179.
    assert changes[4] == []  # the other peer still shows TTK for them
    assert changes[5] == [(P176, "upstreams", ["china_unicom"]), (P179, "upstreams", ["china_unicom"])]
    assert _ups(view) == {
        P176: {"china_unicom"},
        P177: {"china_unicom"},
        P178: set(both),
        P179: {"china_unicom"},
    }
    p178 = view.get(P178)
    assert p178 is not None and p178.shares["transtelecom"] == 2 / 3 and p178.neighbours == {CU, TTK}
    p176 = view.get(P176)
    assert p176 is not None and p176.last_change == T0 + 5 and p176.peers == 2  # one peer withdrew
    assert p176.visibility is not None and math.isclose(p176.visibility, 300 / 320 * 2 / 3)
    assert view.counts == {"applied": 4, "ignored": 2, "outside": 0, "malformed": 0, "error": 0}


def test_a_withdrawal_everywhere_is_a_withdrawn_change_and_visibility_zero() -> None:
    view = _view()
    view.apply_state(_state(), T0)
    for i, peer in enumerate(PEERS):
        _, changes = view.apply_message(update(peer, withdraw=[P177]), T0 + i)
    assert [(c.prefix, c.kind) for c in changes] == [(P177, "withdrawn")]
    p = view.get(P177)
    assert p is not None and p.peers == 0 and p.visibility == 0.0 and p.upstreams == frozenset()
    assert all(math.isclose(s, 0.0) for s in p.shares.values())
    _, back = view.apply_message(update(PEERS[0], (3333, TTK, DEST_ASN), announce=[P177]), T0 + 9)
    assert [(c.kind, sorted(c.new)) for c in back] == [("announced", ["transtelecom"])]


def test_the_most_specific_route_of_a_peer_decides_and_a_covering_route_counts_alone() -> None:
    view = _view()
    routes = {
        ("rrc00", "193.0.0.56"): {"175.45.176.0/22": f"3333 {TTK} {DEST_ASN}", P176: f"3333 {CU} {DEST_ASN}"}
    }
    view.apply_state(_state(routes), T0)
    assert _ups(view) == {
        P176: {"china_unicom"},
        P177: {"transtelecom"},
        P178: {"transtelecom"},
        P179: {"transtelecom"},
    }


def test_prepends_other_groups_other_origins_and_peer_down() -> None:
    view = _view()
    view.apply_state(_state({}), T0)
    view.apply_message(update(PEERS[0], (3333, TTK, DEST_ASN, DEST_ASN), announce=[P177]), T0)
    view.apply_message(update(PEERS[1], (13030, 3356, DEST_ASN), announce=[P177]), T0)
    view.apply_message(update(PEERS[2], (1200, 64500), announce=[P177]), T0)  # someone else originates it
    p = view.get(P177)
    assert p is not None and p.upstreams == {"transtelecom", "other"}
    assert [round(p.shares[t], 3) for t in ("transtelecom", "other", "unknown")] == [0.333, 0.333, 0.333]
    down = {
        "type": "ris_message",
        "data": {"type": "RIS_PEER_STATE", "host": "rrc01", "peer": "195.66.224.175", "state": "down"},
    }
    outcome, changes = view.apply_message(down, T0 + 1)
    assert outcome == "applied" and [c.new for c in changes] == [frozenset({"transtelecom"})]


def test_bad_messages_are_counted_and_change_nothing() -> None:
    view = _view()
    view.apply_state(_state(), T0)
    before = view.prefixes
    bad = [
        None,
        "text",
        {"type": 3},
        {"type": "ris_message"},
        {"type": "ris_message", "data": {"type": "UPDATE"}},
        update(PEERS[0], ("x",), announce=[P176]),  # type: ignore[arg-type]
        update(PEERS[0], (1, True), announce=[P176]),  # type: ignore[arg-type]
        update(PEERS[0], (1, TTK, DEST_ASN), announce=["175.45.176.0/33"]),
        update(PEERS[0], (1, TTK, DEST_ASN), announce=[176]),  # type: ignore[list-item]
        {
            "type": "ris_message",
            "data": {"type": "UPDATE", "host": "rrc00", "peer": "1.2.3.4", "announcements": "x"},
        },
    ]
    assert [view.apply_message(m, T0)[0] for m in bad] == ["malformed"] * len(bad)
    outside = update(
        PEERS[0], (1, TTK, DEST_ASN), announce=["193.0.0.0/21", "2001:db8::/32", "175.45.176.128/25"]
    )
    assert view.apply_message(outside, T0) == ("outside", [])
    assert view.apply_message({"type": "ris_error", "data": {"message": "bad filter"}}, T0) == ("error", [])
    assert view.prefixes == before
    assert view.counts == {"applied": 0, "ignored": 0, "outside": 1, "malformed": len(bad), "error": 1}


def test_memory_is_bounded_in_peers_and_routes_per_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.bgp import live

    monkeypatch.setattr(live, "MAX_PEERS", 2)
    monkeypatch.setattr(live, "MAX_ROUTES_PER_PEER", 2)
    view = _view()
    view.apply_state(_state({}), T0)
    path = (3333, TTK, DEST_ASN)
    assert view.apply_message(update(PEERS[0], path, announce=[P176, P177, P178]), T0)[0] == "applied"
    assert [p.peers for p in view.prefixes] == [1, 1, 0, 0]  # the third route of the peer is not kept
    view.apply_message(update(PEERS[1], path, announce=[P176]), T0)
    assert view.apply_message(update(PEERS[2], path, announce=[P176]), T0)[0] == "ignored"  # a third peer
    assert [p.peers for p in view.prefixes] == [2, 1, 0, 0]


def test_a_later_refresh_reports_what_the_stream_missed_and_sets_rpki() -> None:
    view = _view()
    view.apply_state(_state(), T0)
    routes = baseline()
    routes[("rrc00", "193.0.0.56")][P178] = f"3333 {TTK} {DEST_ASN}"
    rpki = {**dict.fromkeys(SLASH24S, "valid"), P179: "invalid"}
    changes = view.apply_state(_state(routes, rpki=rpki), T0 + 60)
    assert [(c.prefix, c.kind) for c in changes] == [(P178, "upstreams")]
    p = view.get(P179)
    assert p is not None and p.rpki == "invalid"
