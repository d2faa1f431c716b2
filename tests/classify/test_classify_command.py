"""`nkprobe classify`: RIPE Atlas results in, tags and evidence out; bad input is one line and exit 2."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ripe.atlas.sagan import TracerouteResult

from agent.cli import main

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ripe"
TRANSIT = str(FIXTURES / "transit.pfx2as")
TTK = str(FIXTURES / "ttk_mpls_handoff.json")
CU = str(FIXTURES / "china_unicom_unannounced_border.json")


def test_readable_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", TTK, "--asn-file", TRANSIT]) == 0
    out = capsys.readouterr().out
    assert out.startswith("175.45.177.10 (icmp, paris id 1): transtelecom (confidence high)\n")
    assert "  border: hop 10 188.43.225.153 AS20485\n" in out
    assert "  AS path: AS3320 AS20485 ? AS131279\n" in out
    assert "  - hop 14 175.45.177.10 is in 175.45.176.0/22, AS131279\n" in out


def test_json_array_in_array_out_with_nkprobe_filled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    objs = [json.loads(Path(p).read_text()) for p in (TTK, CU)]
    f = tmp_path / "two.json"
    f.write_text(json.dumps(objs))
    assert main(["classify", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [o["nkprobe"]["upstream"] for o in out] == ["transtelecom", "china_unicom"]
    assert out[1]["nkprobe"]["border"] == {"hop": 9, "from": "103.35.255.254", "asn": None}
    for o, original in zip(out, objs, strict=True):
        assert {k: v for k, v in o.items() if k != "nkprobe"} == original
        assert not TracerouteResult(o).is_error


def test_json_lines_from_stdin_and_hostnames_in_input_are_evidence(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    obj = json.loads(Path(CU).read_text())
    obj["result"][8]["result"][0]["hostname"] = "hk-border.chinaunicomglobal.com"
    lines = json.dumps(obj) + "\n\n" + Path(TTK).read_text().replace("\n", "") + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert main(["classify", "-", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and len(out) == 2
    assert any("hk-border.chinaunicomglobal.com" in e for e in out[0]["nkprobe"]["evidence"])


def test_single_object_in_object_out(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", CU, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nkprobe"]["upstream"] == "china_unicom"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "empty input"),
        ("{not json", ":1: not JSON"),
        ('{"dst_addr": "175.45.176.71", "result": []}\n{"dst_addr": 1,\n', ":2: not JSON"),
        ('[{"type": "ping", "dst_addr": "1.2.3.4"}]', ": result 1: not a traceroute"),
        (
            '{"dst_addr": "175.45.176.71", "result": [{"hop": 1, "result": [{"from": "x", "rtt": 1}]}]}',
            "not an IP address",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "in.json"
    f.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "agent", "classify", str(f)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and words in proc.stderr and str(f) in proc.stderr


def test_missing_file_and_bad_asn_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", str(tmp_path / "nope.json")]) == 2
    bad = tmp_path / "bad.pfx2as"
    bad.write_text("175.45.176.0\t22\t131279\n175.45.177.0\tx\t1\n")
    assert main(["classify", TTK, "--asn-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "nope.json" in err and f"{bad}:2: " in err


# A RIPE Atlas download as the results API gives it (atlas.ripe.net/docs/apis/result-format/,
# "traceroute"): one measurement's results from several probes, IPv4 and IPv6 mixed, with timeouts
# ("x"), a late reply ("late"), a quoted TTL ("ittl"), an MPLS extension ("icmpext", RFC 4950), a
# hop-level send error ("error") and an ICMP error letter ("err").
ATLAS_V4: dict[str, object] = {
    "fw": 5080, "lts": 3, "af": 4, "dst_addr": "175.45.176.71", "dst_name": "175.45.176.71",
    "src_addr": "192.168.1.2", "from": "85.1.1.1", "proto": "ICMP", "msm_id": 5001, "prb_id": 1,
    "timestamp": 1765000000, "endtime": 1765000005, "type": "traceroute", "paris_id": 1, "size": 48,
    "result": [
        {"hop": 1, "result": [
            {"from": "192.168.1.1", "ttl": 64, "size": 76, "rtt": 0.5}, {"x": "*"},
            {"from": "192.168.1.1", "ttl": 64, "size": 76, "rtt": 0.4, "ittl": 2},
        ]},
        {"hop": 2, "result": [{"from": "10.99.99.1", "ttl": 253, "size": 140, "rtt": 30.1, "icmpext": {
            "version": 2, "rfc4884": 1,
            "obj": [{"class": 1, "type": 1, "mpls": [{"label": 24001, "exp": 0, "s": 1, "ttl": 1}]}],
        }}]},
        {"hop": 3, "result": [
            {"from": "188.43.225.153", "ttl": 252, "size": 76, "rtt": 120.3},
            {"late": 2, "from": "188.43.225.153", "ttl": 252, "size": 76}, {"x": "*"},
        ]},
        {"hop": 4, "result": [{"x": "*"}, {"x": "*"}, {"x": "*"}]},
        {"hop": 5, "result": [{"from": "175.45.176.71", "ttl": 60, "size": 76, "rtt": 240.0}]},
    ],
}  # fmt: skip
ATLAS_V6: dict[str, object] = {
    **ATLAS_V4, "af": 6, "prb_id": 2, "dst_addr": "2001:db8::1", "dst_name": "2001:db8::1",
    "src_addr": "2001:db8::2", "from": "2001:db8::2",
    "result": [{"hop": 1, "result": [{"from": "2001:db8::3", "ttl": 64, "size": 96, "rtt": 0.5}]}],
}  # fmt: skip
ATLAS_SEND_ERROR = {
    **ATLAS_V4, "prb_id": 3, "result": [{"hop": 1, "error": "connect failed: Network is unreachable"}],
}  # fmt: skip
ATLAS_ERR_LETTER = {
    **ATLAS_V4, "prb_id": 4,
    "result": [{"hop": 1, "result": [
        {"from": "219.158.39.42", "ttl": 250, "size": 76, "rtt": 180.0, "err": "A"},
    ]}],
}  # fmt: skip


@pytest.mark.parametrize("shape", ["array", "lines"])
def test_a_real_shaped_atlas_download_is_read_whole(tmp_path: Path, shape: str) -> None:
    results = [ATLAS_V4, ATLAS_V6, ATLAS_SEND_ERROR, ATLAS_ERR_LETTER] * 1000  # 4,000 results
    f = tmp_path / "measurement.json"
    f.write_text(json.dumps(results) if shape == "array" else "\n".join(json.dumps(r) for r in results))
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "classify", str(f), "--json"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "nkprobe classify: 1000 IPv6 result(s) not tagged (only IPv4 paths are)"
    out = json.loads(proc.stdout)
    assert len(out) == 4000
    assert [o.get("nkprobe", {}).get("upstream") for o in out[:4]] == [
        "transtelecom",  # the configured border 188.43.225.153, past the MPLS hop, the late line ignored
        None,  # IPv6: left as it was, untagged
        "unknown",  # the probe could not send: nothing answered
        "china_unicom",  # !X from China Unicom's 219.158.39.42, never reaching the destination
    ]
    assert out[1] == ATLAS_V6
    assert out[0]["nkprobe"]["confidence"] == "high" and out[3]["nkprobe"]["confidence"] == "low"
    assert any("'A' (administratively prohibited, !X)" in e for e in out[3]["nkprobe"]["evidence"])
    for o in out[:4]:
        assert not TracerouteResult(o).is_malformed  # RIPE's own parser still reads what we wrote


def test_a_file_that_is_not_atlas_json_is_one_line_that_says_what_was_expected(tmp_path: Path) -> None:
    f = tmp_path / "export.json"
    f.write_text(json.dumps({"hops": [{"ip": "1.2.3.4"}]}))  # some other tool's JSON
    proc = subprocess.run([sys.executable, "-m", "agent", "classify", str(f)], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert f"{f}: not a RIPE Atlas traceroute result (no 'dst_addr')" in proc.stderr
    assert "an array of results" in proc.stderr
