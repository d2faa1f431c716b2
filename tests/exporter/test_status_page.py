"""The status page on data: the model (/status.json), its HTML, escaping, size bounds, the cache, the server.

Pure parts are stepped with numbers (the time is an argument); the history is a real SQLite file written
by the agent's own HistoryStore; the server is the agent's real one on loopback. The page in a real
browser, from an agent in the lab, is tests/lab/test_status_page_lab.py.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from agent.bgp.view import BgpCheck, BgpView, PrefixView
from agent.exporter import build_registry
from agent.exporter.server import MetricsServer
from agent.exporter.status import HistoryExtract, StatusSource, read_history, render_page, status_model
from agent.exporter.status.timeline import Segment, Step, segments
from agent.history import HistoryStatus, HistoryStore, PathChange
from agent.model import (
    Border,
    Classification,
    Hop,
    MplsLabel,
    PingResult,
    Protocol,
    Reply,
    ReplyKind,
    Target,
)
from agent.model import Path as TracePath
from agent.results import Results
from agent.tracking.hysteresis import TagHysteresis, tag_values

CU, TTK = "china_unicom", "transtelecom"
TAGS = tag_values([CU, TTK])
NOW = 1_800_000_000.0
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


def tagged(ps: TagHysteresis) -> dict[str, Any]:
    """What the agent records of a target's tag after a round (agent.agent, Results.record_path)."""
    st = ps.status
    return {"tag": st.tag, "ratio": st.ratio, "changes": st.changes, "last_change_at": st.last_change_at}


def trace_path(target: str, hostile: bool = False) -> tuple[TracePath, Classification]:
    mpls = (MplsLabel(24001, 0, True, 1),)
    hops = (
        Hop(1, (Reply("198.18.0.2", 0.001, ReplyKind.TIME_EXCEEDED),), 1),
        Hop(2, (), 2),
        Hop(3, (Reply("198.18.48.2", 0.011, ReplyKind.TIME_EXCEEDED, mpls=mpls),), 1),
        Hop(4, (Reply("198.18.48.6", 0.028, ReplyKind.TIME_EXCEEDED),), 1),
        Hop(5, (Reply(target, 0.040, ReplyKind.TCP_SYNACK),), 1),
    )
    path = TracePath(target, Protocol.TCP, 3, hops, True, NOW - 30, 0.2)
    evidence = (HOSTILE,) if hostile else ("hop 4 198.18.48.6 is AS4837 (china_unicom)",)
    c = Classification(CU, Border(4, "198.18.48.6", 4837), (64512, None, 4837, 131279), evidence, "high")
    return path, c


def make_state(targets: tuple[Target, ...], hostile: bool = False) -> Results:
    state = Results(
        agent_name=HOSTILE if hostile else "pi-1",
        version="1.0",
        targets=targets,
        ping_protocols=("icmp", "tcp"),
        trace_protocol="tcp",
        tags=TAGS,
        wall=lambda: NOW - 3600,
    )
    for i, t in enumerate(targets):
        ps = TagHysteresis(tags=TAGS)
        tag = TTK if t.address.startswith("198.19.177.") else CU
        ps.observe([tag, tag], NOW - 600)
        ps.observe([tag, tag], NOW - 500)
        path, c = trace_path(t.address, hostile)
        state.record_path(t.address, **tagged(ps), hops=5, reached=True, border_rtt={}, confidence="high",
                          path=path, classification=c)  # fmt: skip
        for n in range(25):
            rtt = None if n % 5 == 0 else 0.040 + i / 1000
            state.record_ping(PingResult(t.address, Protocol.TCP, NOW - 25 + n, rtt))
    return state


def targets(n: int) -> tuple[Target, ...]:
    return tuple(Target(f"198.19.{176 + i % 4}.{10 + i // 4}", f"host-{i}") for i in range(n))


def asn_of(address: str) -> int | None:
    return {"198.18.48.2": 4837, "198.18.48.6": 4837}.get(
        address, 131279 if address.startswith("198.19.") else None
    )


def change(target: str, at: float, old: str, new: str) -> PathChange:
    prefix = target.rsplit(".", 1)[0] + ".0/24"
    return PathChange(at, "pi-1", target, prefix, old, new, (64512, 4837, 131279), (), ("e",), None, "tcp")


def write_history(state_dir: Path, rows: list[PathChange]) -> None:
    store = HistoryStore(str(state_dir))
    store.open()
    try:
        for i in range(0, len(rows), 1000):
            store.insert(rows[i : i + 1000])
    finally:
        store.close()


class Elements(HTMLParser):
    """Every start tag and its attributes, and the text: enough to see what a browser would build."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Elements:
    p = Elements()
    p.feed(page)
    return p


# -- the timeline ------------------------------------------------------------------------------------


def test_timeline_from_changes_before_and_in_the_window() -> None:
    steps = [Step(40.0, CU, TTK), Step(70.0, TTK, CU)]
    got = segments(start=0.0, now=100.0, started_at=-50.0, current=CU, before=CU, steps=steps)
    assert got == [Segment(0.0, 40.0, CU), Segment(40.0, 70.0, TTK), Segment(70.0, 100.0, CU)]


def test_timeline_says_nothing_it_does_not_know() -> None:
    # A change of an earlier run: its old tag's span is unknown, so the lane starts at the change.
    got = segments(start=0.0, now=100.0, started_at=80.0, current=TTK, before=None, steps=[Step(40, CU, TTK)])
    assert got == [Segment(40.0, 100.0, TTK)]
    # The same change in this run: the old tag held from the agent's start.
    got = segments(start=0.0, now=100.0, started_at=10.0, current=TTK, before=None, steps=[Step(40, CU, TTK)])
    assert got == [Segment(10.0, 40.0, CU), Segment(40.0, 100.0, TTK)]
    # Only the newest changes were read (the page's bound): nothing before the first one kept.
    got = segments(start=0.0, now=100.0, started_at=0.0, current=CU, before=TTK,
                   steps=[Step(60, TTK, CU)], complete=False)  # fmt: skip
    assert got == [Segment(60.0, 100.0, CU)]
    # A discovery in this run after a history that ended on another tag.
    got = segments(start=0.0, now=100.0, started_at=50.0, current=TTK, before=CU, steps=[])
    assert got == [Segment(0.0, 50.0, CU), Segment(50.0, 100.0, TTK)]


# -- the model and the page --------------------------------------------------------------------------


def test_model_per_prefix_target_changes_and_health() -> None:
    state = make_state((Target("198.19.176.10", "a"), Target("198.19.176.20"), Target("198.19.177.10")))
    history = HistoryExtract(
        recent=[change("198.19.176.10", NOW - 100, TTK, CU)],
        window={"198.19.176.10": [change("198.19.176.10", NOW - 100, TTK, CU)]},
        before={"198.19.176.10": change("198.19.176.10", NOW - 90000, CU, TTK)},
    )
    view = BgpView(131279, (PrefixView("198.19.177.0/24", frozenset({20485}), "asn-neighbours"),), NOW - 7200)
    bgp = BgpCheck.of(view, {CU: [4837], TTK: [20485]})
    writer = HistoryStatus(healthy=False, last_error="disk <full>", pending=2, written=5, dropped=0, pruned=0,
                           corrupt_files=(), write_errors=3)  # fmt: skip
    m = status_model(state.snapshot(), now=NOW, history=history, bgp=bgp, asn_of=asn_of, max_pps=20,
                     pps_recent=3.5, writer=writer)  # fmt: skip
    json.dumps(m, allow_nan=False)  # /status.json is this dict, strict JSON
    assert [p["prefix"] for p in m["prefixes"]] == ["198.19.176.0/24", "198.19.177.0/24"]
    p176, p177 = m["prefixes"]
    assert (p176["upstream"], p176["confidence"], p176["targets"]) == (
        CU,
        "high",
        ["198.19.176.10", "198.19.176.20"],
    )
    assert p176["ratio"][CU] == 1.0 and p176["bgp"] is None
    assert p177["upstream"] == TTK and p177["bgp"]["neighbours"] == [20485] and p177["bgp"]["agrees"] is True
    lane = p176["timeline"][0]
    assert [s["upstream"] for s in lane["segments"]] == [TTK, CU]
    assert lane["segments"][0]["start"] == m["window"]["start"] and lane["segments"][-1]["end"] == NOW
    t = m["targets"][0]
    assert (t["address"], t["name"], t["upstream"], t["confidence"]) == ("198.19.176.10", "a", CU, "high")
    assert t["rtt_ms"] == {"tcp": 40.0} and t["loss"]["tcp"] == 0.2  # 4 of the last 20 lost
    assert [(h["hop"], h["address"], h["asn"], h["border"]) for h in t["hops"]] == [
        (1, "198.18.0.2", None, False), (2, None, None, False), (3, "198.18.48.2", 4837, False),
        (4, "198.18.48.6", 4837, True), (5, "198.19.176.10", 131279, False),
    ]  # fmt: skip
    assert t["hops"][2]["mpls"] == [{"label": 24001, "exp": 0, "ttl": 1}]
    assert t["border"] == {"hop": 4, "address": "198.18.48.6", "asn": 4837}
    assert t["evidence"] and t["trace"]["paris_id"] == 3
    assert m["changes"] == [{"time": NOW - 100, "target": "198.19.176.10", "prefix": "198.19.176.0/24",
                             "old": TTK, "new": CU, "as_path": [64512, 4837, 131279]}]  # fmt: skip
    page = render_page(m)
    assert "neighbours AS20485 (transtelecom) agrees with the traces" in page
    h = m["health"]
    assert h["uptime_s"] == 3600.0 and h["max_pps"] == 20 and h["pps_recent"] == 3.5
    assert set(h) >= {"version", "faults", "errors", "asn_table", "history", "pps_average"}
    # The history writer's own status, as /metrics shows it: its fault, its errors, its counts.
    assert h["faults"]["history"] is True and h["errors"]["history"] == 3
    history_health = h["history"]
    assert (history_health["pending"], history_health["written"]) == (2, 5)
    assert history_health["last_error"] == "disk <full>"
    assert "disk &lt;full&gt;" in page


def test_a_prefix_whose_targets_disagree_is_mixed() -> None:
    state = make_state((Target("198.19.178.10"), Target("198.19.178.20")))
    ps = TagHysteresis(tags=TAGS)
    ps.observe([TTK], NOW - 10)
    ps.observe([TTK], NOW - 5)
    state.record_path("198.19.178.20", **tagged(ps), hops=5, reached=True, border_rtt={})
    m = status_model(state.snapshot(), now=NOW, history=HistoryExtract())
    assert (m["prefixes"][0]["upstream"], m["prefixes"][0]["confidence"]) == ("mixed", "none")


def test_html_and_json_are_two_views_of_one_model() -> None:
    state = make_state(targets(8))
    m = status_model(state.snapshot(), now=NOW, history=HistoryExtract(), asn_of=asn_of)
    page = render_page(m)
    doc = parse(page)
    articles = [a["data-prefix"] for tag, a in doc.tags if tag == "article"]
    assert articles == [p["prefix"] for p in m["prefixes"]]
    details = [a["data-target"] for tag, a in doc.tags if tag == "details"]
    assert details == [t["address"] for t in m["targets"]]
    assert ("meta", {"http-equiv": "refresh", "content": "30"}) in doc.tags
    assert not [t for t, _ in doc.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, attrs in doc.tags for a in attrs if a == "src"]


def test_every_outside_string_is_escaped() -> None:
    # A reverse name is data from the Internet; so are evidence sentences naming hops; a target name and
    # the agent name come from a config someone else may have written.
    state = make_state((Target("198.19.176.10", HOSTILE),), hostile=True)
    m = status_model(state.snapshot(), now=NOW, history=HistoryExtract(recent=[]), asn_of=asn_of,
                     names={"198.18.48.6": HOSTILE})  # fmt: skip
    page = render_page(m)
    doc = parse(page)
    assert not [t for t, _ in doc.tags if t in ("script", "img")]
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]
    text = "".join(doc.text)
    assert text.count(HOSTILE) >= 4  # agent name (title, h1), target name (x2), hop name, evidence
    assert HOSTILE not in page  # only its escaped form is in the source


def test_page_size_is_bounded_however_long_the_history(tmp_path: Path) -> None:
    ts = targets(8)
    sizes = {}
    for n in (2, 2000, 4000):  # changes per target within the last 24 h
        rows = [change(t.address, NOW - 86000 + i * 80000 / n, CU if i % 2 else TTK, TTK if i % 2 else CU)
                for t in ts for i in range(n)]  # fmt: skip
        write_history(tmp_path / str(n), rows)
        extract = read_history(str(tmp_path / str(n)), [t.address for t in ts], NOW)
        assert len(extract.recent) == min(20, len(rows))
        assert all(len(v) <= 24 for v in extract.window.values())
        m = status_model(make_state(ts).snapshot(), now=NOW, history=extract, asn_of=asn_of)
        sizes[n] = len(render_page(m).encode())
    assert sizes[4000] < 100_000, sizes
    assert abs(sizes[4000] - sizes[2000]) < 0.02 * sizes[2000], sizes  # twice the history, the same page


def test_history_read_is_fast_on_a_long_history(tmp_path: Path) -> None:
    ts = targets(8)
    rows = [change(t.address, NOW - 30 * 86400 + i * 30, CU, TTK) for t in ts for i in range(5_000)]
    write_history(tmp_path, rows)
    start = time.perf_counter()
    extract = read_history(str(tmp_path), [t.address for t in ts], NOW)
    took = time.perf_counter() - start
    assert extract.error is None and len(extract.recent) == 20
    assert took < 0.5, f"{took:.3f} s for 40 000 rows"  # LIMITed reads on the indexes, not a scan


def test_unreadable_history_is_said_on_the_page(tmp_path: Path) -> None:
    (tmp_path / "history.db").write_bytes(b"not sqlite" * 100)
    extract = read_history(str(tmp_path), ["198.19.176.10"], NOW)
    assert extract.error and "cannot read the path history" in extract.error
    m = status_model(make_state((Target("198.19.176.10"),)).snapshot(), now=NOW, history=extract)
    assert "cannot read the path history" in render_page(m)


# -- the source (cache) and the server ---------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_source_caches_the_page_and_the_history(tmp_path: Path) -> None:
    state = make_state(targets(4))
    clock = Clock()
    reads: list[float] = []

    def state_dir() -> str:
        reads.append(clock.t)
        return str(tmp_path)

    source = StatusSource(state.snapshot, state_dir=state_dir, wall=lambda: NOW, monotonic=clock)
    first = source.html()
    assert source.html() is first and source.json() and source.builds == 1
    clock.t += 2.5  # past the page's 2 s: built again, the history (10 s) not read again
    source.html()
    assert source.builds == 2 and len(reads) == 1
    clock.t += 10.0
    source.json()
    assert source.builds == 3 and len(reads) == 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MetricsServer]:
    state = make_state(targets(50))
    source = StatusSource(state.snapshot, state_dir=lambda: str(tmp_path), asn_of=asn_of, page_ttl_s=0.0)
    srv = MetricsServer("127.0.0.1:0", build_registry(state), version="1.0", agent_name=lambda: "pi-1",
                        status=source)  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers["Content-Type"], r.read()


def test_server_serves_the_page_and_its_json(server: MetricsServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    status, kind, body = fetch(base + "/")
    assert status == 200 and kind == "text/html; charset=utf-8" and b"198.19.179.0/24" in body
    status, kind, body = fetch(base + "/status.json")
    data: dict[str, Any] = json.loads(body)
    assert kind == "application/json" and len(data["targets"]) == 50
    assert {"prefix", "upstream", "confidence"} <= set(data["prefixes"][0])
    assert {"address", "hops", "evidence"} <= set(data["targets"][0])
    assert {"changes", "health"} <= set(data)
    request = urllib.request.Request(base + "/", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        page = gzip.decompress(r.read())
    assert page.startswith(b"<!doctype html>") and b"198.19.179.0/24" in page


def test_a_client_that_reads_nothing_does_not_stall_metrics(server: MetricsServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    stalled = []
    for request in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 20, b"GET /status.js", b""):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its window fills at once
        s.connect(("127.0.0.1", server.port))
        if request:
            s.sendall(request)
        stalled.append(s)  # and never reads
    try:
        for _ in range(5):
            start = time.monotonic()
            status, _, body = fetch(base + "/metrics")
            assert status == 200 and b"nkprobe_path_upstream" in body
            assert time.monotonic() - start < 1.0
        status, _, _ = fetch(base + "/")
        assert status == 200
    finally:
        for s in stalled:
            s.close()
