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
    assert out.startswith("175.45.177.10 (icmp, paris id 1): transtelecom\n")
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
