"""The fast way to tag stored results (addresses_from_ripe + classify_addresses) says exactly what
from_ripe + classify say, and fails exactly as from_ripe fails."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.asn import load_table
from agent.classify import Settings, classify, classify_addresses
from agent.config import Config
from agent.formats import atlas_in
from agent.formats.atlas_in import addresses_from_ripe, from_ripe, gc_paused
from agent.model import Hop, Path

FIXTURES = FsPath(__file__).parent.parent / "fixtures" / "ripe"
DST = "175.45.176.71"


@pytest.fixture(autouse=True)
def _cold_address_cache() -> Iterator[None]:
    """Each test starts with no address known valid (the fast paths need one seen before)."""
    atlas_in._VALID.clear()
    yield
    atlas_in._VALID.clear()


def _slow_from_ripe(obj: dict[str, Any]) -> Path:
    """from_ripe's hops as `_reply_from_ripe` reads each line: the reference for the fast path."""
    path = from_ripe(obj)
    hops = []
    for index, raw_hop in enumerate(obj["result"]):
        replies = []
        for j, raw in enumerate(raw_hop.get("result", [])):
            reply = atlas_in._reply_from_ripe(raw, path.protocol, path.target, path.hops[index].ttl, j)
            if reply is not None:
                replies.append(reply)
        hops.append(Hop(path.hops[index].ttl, tuple(replies), path.hops[index].probes_sent))
    return Path(
        path.target,
        path.protocol,
        path.flow_id,
        tuple(hops),
        path.reached,
        path.started_at,
        path.duration_s,
        path.src,
        path.dst_port,
        path.packet_size,
        path.stop_reason,
    )


def _fixtures() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]


@pytest.mark.parametrize("warm", [False, True])
def test_fixtures_same_hops_errors_and_tags(warm: bool) -> None:
    table = load_table([FIXTURES / "transit.pfx2as"])
    settings_ = Settings.from_config(Config())
    names = {"129.250.7.69": "trans-telecom-0.r20.frnkge08.de.bb.gin.ntt.net"}
    for obj in _fixtures():
        if warm:
            from_ripe(obj)  # every address now known valid: the fast paths run
        path = from_ripe(obj)
        assert path == _slow_from_ripe(obj)
        fast = addresses_from_ripe(obj)
        assert (fast.target, fast.protocol, fast.flow_id) == (path.target, path.protocol, path.flow_id)
        assert fast.hops == [(h.ttl, h.addresses) for h in path.hops]
        assert fast.errors == {
            i: tuple(dict.fromkeys(r.err for r in h.replies if r.err is not None))
            for i, h in enumerate(path.hops)
            if any(r.err is not None for r in h.replies)
        }
        for n in ({}, names):
            fast_tag = classify_addresses(
                fast.hops, table.lookup, settings_, n, fast.errors, target=fast.target, rtts=fast.rtts
            )
            assert fast_tag == classify(path, table.lookup, settings_, n)


# Reply lines with every odd value a stored result may hold, well-formed or not.
_VALUES: dict[str, list[Any]] = {
    "from": ["10.0.0.1", DST, "219.158.3.141", "2001:db8::1", "nowhere", "", None, 5, ["10.0.0.1"]],
    "rtt": [1.5, 2, "3.5", "fast", None, True],
    "ttl": [250, "250", "x", None, 1.5],
    "size": [76, "76", "big", None],
    "ittl": [0, 2, "2", "x"],
    "err": ["A", "N", "H", 3, 7, "7", "zz", True, None],
    "flags": ["SA", "R", "", 5],
    "hdropts": [[{"mss": 1460}]],
    "icmpext": [
        {"obj": [{"class": 1, "type": 1, "mpls": [{"exp": 0, "label": 16, "s": 1, "ttl": 1}]}]},
        {"obj": [{"mpls": [{"label": "abc"}]}]},
        {"obj": "x"},
        None,
        [],
    ],
    "x": ["*"],
    "late": [1],
    "dup": [True, False],
    "hostname": ["r1.example.net"],
    "asn": [4837],
}
_COMMON = {"from": "10.0.0.1", "rtt": 1.5, "ttl": 250, "size": 76}


def _line(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(["*", 3, None, ["from"]]))  # not an object at all
    line: dict[str, Any] = {}
    for key, values in _VALUES.items():
        common = key in _COMMON
        if draw(st.integers(0, 9)) < (8 if common else 1):
            line[key] = _COMMON[key] if common and draw(st.booleans()) else draw(st.sampled_from(values))
    return line


@st.composite
def _results(draw: st.DrawFn) -> dict[str, Any]:
    hops: list[Any] = []
    for n in range(1, draw(st.integers(1, 6)) + 1):
        if draw(st.integers(0, 40)) == 0:
            hops.append(draw(st.sampled_from([None, {"hop": "x", "result": []}, {"hop": n, "result": "x"}])))
            continue
        hops.append({"hop": n, "result": [_line(draw) for _ in range(draw(st.integers(0, 3)))]})
    obj: dict[str, Any] = {
        "dst_addr": DST,
        "proto": draw(st.sampled_from(["ICMP", "UDP", "TCP"])),
        "paris_id": draw(st.sampled_from([3, "3", "x"])),
        "result": hops,
    }
    if draw(st.booleans()):
        obj["timestamp"] = draw(st.sampled_from([1764806400, "soon"]))
    return obj


def _outcome(read: Any, obj: Any) -> tuple[str, Any]:
    try:
        return "ok", read(obj)
    except Exception as exc:  # both must fail alike, whatever the failure
        return type(exc).__name__, str(exc)


@settings(max_examples=300, deadline=None)
@given(_results(), st.booleans())
def test_fast_paths_read_and_fail_as_the_line_by_line_reader(obj: dict[str, Any], warm: bool) -> None:
    atlas_in._VALID.clear()
    if warm:
        atlas_in._VALID.update(("10.0.0.1", DST, "219.158.3.141", "2001:db8::1"))
    kind, full = _outcome(from_ripe, obj)
    fast_kind, fast = _outcome(addresses_from_ripe, obj)
    assert (fast_kind, kind) == (kind, kind)
    if kind != "ok":
        assert fast == full  # the same message
        return
    assert full == _slow_from_ripe(obj)
    assert fast.hops == [(h.ttl, h.addresses) for h in full.hops]
    errs = {i: {r.err for r in h.replies if r.err is not None} for i, h in enumerate(full.hops)}
    assert {i: set(e) for i, e in fast.errors.items()} == {i: e for i, e in errs.items() if e}


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


@pytest.mark.parametrize(
    "extra",
    [
        {"icmpext": {"obj": [{"mpls": [{"label": "abc"}]}]}},  # from_ripe's MPLS reading raises
        {"rtt": "fast"},
        {"ttl": "x"},
        {"size": "big"},
        {"ittl": "x"},
        {"err": "A"},
        {"flags": "SA"},
    ],
)
def test_a_known_address_still_gets_every_check(extra: dict[str, Any]) -> None:
    line = {"from": "10.0.0.1", "rtt": 1.5, "ttl": 250, "size": 76, **extra}
    obj = {"dst_addr": DST, "result": [{"hop": 1, "result": [dict(_COMMON), line]}]}
    kind, full = _outcome(from_ripe, obj)
    assert _outcome(addresses_from_ripe, obj) == (
        (kind, full) if kind != "ok" else ("ok", addresses_from_ripe(obj))
    )
    if kind == "ok":
        fast = addresses_from_ripe(obj)
        assert fast.hops == [(1, ("10.0.0.1",))]
        assert fast.errors == ({0: ("A",)} if "err" in extra else {})
