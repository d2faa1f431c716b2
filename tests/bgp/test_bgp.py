"""The control-plane cross-check: RIPEstat snapshots (tests/fixtures/bgp, formats cited in its README)
read offline into per-/24 neighbours of AS131279, the `nkprobe bgp` command, the [bgp] config key, the
agent's nkprobe_path_upstream_in_bgp, and a reload that re-reads the files."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.bgp import BgpCheck, build_view, load_view, parse_document, read_document
from agent.bgp.ripestat import neighbour_of
from agent.cli import main
from agent.config import DEFAULT_UPSTREAMS, load_config, loads_config
from agent.errors import ConfigError, InputError
from agent.exporter.collector import SnapshotCollector
from agent.model import Target
from agent.results import Results

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bgp"
LG = FIXTURES / "looking-glass-175.45.176.0-22.json"
NB = FIXTURES / "asn-neighbours-AS131279.json"
DEST = ("175.45.176.0/22",)
P176, P177, P178, P179 = (f"175.45.{n}.0/24" for n in (176, 177, 178, 179))


def _neighbours(view: object) -> dict[str, set[int]]:
    return {p.prefix: set(p.neighbours) for p in view.prefixes}  # type: ignore[attr-defined]


def test_looking_glass_gives_neighbours_per_slash24() -> None:
    view = load_view([str(LG)], 131279, DEST)
    assert _neighbours(view) == {
        P176: {134544},
        P177: {20485},  # prepends skipped; the AS_SET before it ignored
        P178: {134544, 20485},
        P179: {20485},  # no /24 announced: the covering /22 counts
    }
    sources = {p.prefix: p.source for p in view.prefixes}
    assert sources[P176] == "looking-glass 175.45.176.0/24"
    assert sources[P179] == "looking-glass 175.45.176.0/22"
    # The /22's route via TTK does not leak into .176, which has its own, more specific route.
    assert view.get(P176) is not None and view.get(P176).routes == 2  # type: ignore[union-attr]
    assert view.time == 1768464000.0  # data.latest_time 2026-01-15T08:00:00 (UTC)


def test_asn_neighbours_fill_every_slash24_at_as_level() -> None:
    view = load_view([str(NB)], 131279, DEST)
    assert _neighbours(view) == {key: {134544, 20485} for key in (P176, P177, P178, P179)}
    assert {p.source for p in view.prefixes} == {"asn-neighbours"}
    # Both files: the looking glass decides where it has routes; the oldest time is the snapshot's.
    both = load_view([str(LG), str(NB)], 131279, DEST)
    assert _neighbours(both)[P176] == {134544}
    assert both.time == 1768435200.0  # asn-neighbours latest_time 2026-01-15T00:00:00


def test_uncertain_neighbours_count_right_ones_do_not() -> None:
    doc = json.loads(NB.read_text())
    doc["data"]["neighbours"] = [
        {"asn": 20485, "type": "uncertain", "power": 3},
        {"asn": 64500, "type": "right", "power": 1},
    ]
    view = build_view([parse_document(doc, "x.json")], 131279, ["175.45.177.0/24"])
    assert _neighbours(view) == {P177: {20485}}


def test_other_origin_and_nothing_known() -> None:
    doc = json.loads(LG.read_text())
    doc["data"]["rrcs"] = [
        {
            "rrc": "RRC00",
            "peers": [
                {"prefix": "175.45.179.0/24", "as_path": "3333 64511"},  # someone else originates it
                {"prefix": "175.45.179.0/24", "as_path": "131279"},  # a collector peering with the origin
            ],
        }
    ]
    view = build_view([parse_document(doc, "x.json")], 131279, DEST)
    p179 = view.get(P179)
    assert p179 is not None and p179.other_origins == {64511} and p179.neighbours == set()
    p176 = view.get(P176)
    assert p176 is not None and p176.source == "" and p176.neighbours == set()


def test_neighbour_of() -> None:
    assert neighbour_of((1, 2, 131279, 131279), 131279) == 2
    assert neighbour_of((131279, 131279), 131279) is None
    assert neighbour_of((1, 131279, 2), 131279) is None  # not the origin: not its neighbour here


def test_check_against_the_upstream_groups() -> None:
    check = BgpCheck.of(load_view([str(LG)], 131279, DEST), DEFAULT_UPSTREAMS)
    assert check.in_bgp(P176, "china_unicom") is True  # AS134544 is in the china_unicom group
    assert check.in_bgp(P176, "transtelecom") is False
    assert check.in_bgp(P178, "transtelecom") is True
    assert check.in_bgp(P177, "other") is False
    assert check.in_bgp(P177, "unknown") is None
    assert check.in_bgp("175.45.180.0/24", "china_unicom") is None  # outside the snapshot


def test_gzip_file(tmp_path: Path) -> None:
    packed = tmp_path / "lg.json.gz"
    packed.write_bytes(gzip.compress(LG.read_bytes()))
    assert read_document(str(packed)).routes == read_document(str(LG)).routes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not JSON"),
        (b'{"status": "ok"}', 'no "data" object'),
        (b'{"data_call_name": "routing-status", "data": {}}', "'routing-status' is not one nkprobe reads"),
        (b'{"data_call_name": "looking-glass", "data": {"rrcs": 3}}', 'no "rrcs" list'),
        (
            b'{"data_call_name": "looking-glass", "data": {"rrcs": [{"peers": [{"prefix": "x"}]}]}}',
            'data.rrcs[0].peers[0] needs an IPv4 "prefix"',
        ),
        (b'{"data_call_name": "asn-neighbours", "data": {"neighbours": [{}]}}', "data.neighbours[0] needs"),
        (b'{"status": "error", "data_call_name": "asn-neighbours", "data": {}}', "status 'error'"),
        (b"\x1f\x8bbroken", "broken gzip"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_document(str(path))
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_command_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bgp", str(LG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "AS131279 neighbours in BGP, snapshot 2026-01-15T08:00:00Z"
    assert out[1] == f"{P176}\tAS134544 (china_unicom)\t[looking-glass 175.45.176.0/24]"
    assert out[3].startswith(f"{P178}\tAS20485 (transtelecom), AS134544 (china_unicom)")
    assert main(["bgp", str(LG), str(NB), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = {r["prefix"]: r for r in doc["prefixes"]}
    assert rows[P178]["upstreams"] == ["china_unicom", "transtelecom"]
    assert rows[P177]["neighbours"] == [{"asn": 20485, "upstream": "transtelecom"}]
    assert doc["destination_asn"] == 131279 and doc["time"] == "2026-01-15T00:00:00Z"


def test_command_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bgp", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read BGP snapshot" in err
    config = tmp_path / "c.toml"
    config.write_text('[agent]\nname = "x"\n')
    assert main(["bgp", "--config", str(config)]) == 2
    assert "set [bgp] snapshot" in capsys.readouterr().err


def test_config_key_resolves_paths_and_rejects_typos(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(LG, tmp_path / "lg.json")
    config = tmp_path / "c.toml"
    config.write_text('[bgp]\nsnapshot = ["lg.json"]\n')
    loaded = load_config(str(config))
    assert loaded.bgp.snapshot == (str(tmp_path / "lg.json"),)
    assert main(["bgp", "--config", str(config)]) == 0  # the config's files when none are named
    assert P176 in capsys.readouterr().out
    with pytest.raises(ConfigError) as info:
        loads_config('[bgp]\nsnapshots = ["lg.json"]\n')
    assert any("bgp.snapshots" in p for p in info.value.problems)
    assert loads_config("").bgp.snapshot == ()


def _samples(check: BgpCheck | None, tags: dict[str, str]) -> dict[str, float]:
    state = Results(
        agent_name="a",
        version="0",
        targets=[Target(t) for t in tags],
        ping_protocols=("tcp",),
        trace_protocol="tcp",
        tags=("china_unicom", "transtelecom", "other", "unknown"),
    )
    snap = state.snapshot()
    snap = dataclasses.replace(
        snap, targets=tuple(dataclasses.replace(t, tag=tags[t.target.address]) for t in snap.targets)
    )
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(lambda: snap, lambda: check))
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name == "nkprobe_path_upstream_in_bgp":
                assert set(s.labels) == {"target", "prefix"}
                out[s.labels["target"]] = s.value
            if s.name == "nkprobe_bgp_snapshot_timestamp_seconds":
                out["time"] = s.value
    return out


def test_agent_exports_whether_the_traced_upstream_is_in_bgp() -> None:
    check = BgpCheck.of(load_view([str(LG)], 131279, DEST), DEFAULT_UPSTREAMS)
    tags = {
        "175.45.176.15": "china_unicom",  # agrees
        "175.45.177.10": "china_unicom",  # BGP shows only TTK there
        "175.45.178.56": "unknown",  # cannot tell
    }
    got = _samples(check, tags)
    assert got["175.45.176.15"] == 1.0 and got["175.45.177.10"] == 0.0
    assert math.isnan(got["175.45.178.56"])
    assert got["time"] == 1768464000.0
    # Without a snapshot every target's series is there, NaN, and the time is 0.
    none = _samples(None, tags)
    assert all(math.isnan(none[t]) for t in tags) and none["time"] == 0.0


def test_reload_rereads_the_snapshot_and_refuses_a_broken_one(tmp_path: Path) -> None:
    from agent.agent import load_tagger  # what start-up and every reload (SIGHUP) run

    snap = tmp_path / "bgp.json"
    shutil.copy(LG, snap)
    config = tmp_path / "c.toml"
    config.write_text(f'[bgp]\nsnapshot = ["{snap}"]\n')
    cfg = load_config(str(config))
    tagger = load_tagger(cfg)
    assert tagger.bgp is not None and tagger.bgp.in_bgp(P177, "transtelecom") is True
    # A new snapshot where TTK is gone from .177: the next load (what SIGHUP runs) picks it up.
    doc = json.loads(LG.read_text())
    for rrc in doc["data"]["rrcs"]:
        rrc["peers"] = [p for p in rrc["peers"] if p["prefix"] != "175.45.177.0/24"]
    doc["data"]["rrcs"][0]["peers"].append(
        {"prefix": "175.45.177.0/24", "as_path": "3333 4837 134544 131279"}
    )
    snap.write_text(json.dumps(doc))
    reloaded = load_tagger(load_config(str(config)))
    assert reloaded.bgp is not None and reloaded.bgp.in_bgp(P177, "transtelecom") is False
    # A broken file fails the load (the reload is refused: tests/agent/test_agent_reload.py).
    snap.write_text("{")
    with pytest.raises(InputError):
        load_tagger(load_config(str(config)))
