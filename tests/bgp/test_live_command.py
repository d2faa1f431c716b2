"""`nkprobe bgp --live [--duration S]` against local RIS Live and RIPEstat servers: the per-/24 view, then
each change of the 2017-10-01 sequence as it comes; --json at the end; and the usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.support.ristest import RipestatServer, RisLiveServer, sequence_2017
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, ris: RisLiveServer, stat: RipestatServer) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f"[bgp]\nris_live_url = '{ris.url}'\nripestat_url = '{stat.url}'\n")
    return path


def _run(tmp_path: Path, *extra: str) -> tuple[str, str]:
    with RisLiveServer() as ris, RipestatServer() as stat:
        cmd = [sys.executable, "-m", "agent", "bgp", "--live", "--duration", "2.5", "--config",
               str(_config(tmp_path, ris, stat)), *extra]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        assert proc.stderr is not None
        # The replay starts once the RIPEstat baseline is in (its log line on stderr): an update that
        # comes before it is applied but is no change.
        seen = []
        while not any("BGP view refreshed from RIPEstat" in line for line in seen):
            line = proc.stderr.readline()
            assert line, f"exited before its first refresh: {''.join(seen)}"
            seen.append(line)
        wait_for(lambda: ris.subscriptions, 20, "nkprobe bgp --live never subscribed")
        for message in sequence_2017():
            ris.send(message)
        out, err = proc.communicate(timeout=30)
        err = "".join(seen) + err
    assert proc.returncode == 0, err
    return out, err


def test_live_prints_the_view_then_each_change(tmp_path: Path) -> None:
    out, _ = _run(tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("AS131279 in BGP, "), out
    assert lines[1].split("\t") == [
        "175.45.176.0/24", "china_unicom 100%", "visibility 94%", "RPKI valid", "3 peers"
    ]  # fmt: skip
    changes = [line.split(" ", 1)[1] for line in lines[5:]]
    assert changes == [
        "175.45.176.0/24: BGP upstreams china_unicom -> china_unicom, transtelecom",
        "175.45.178.0/24: BGP upstreams china_unicom -> china_unicom, transtelecom",
        "175.45.179.0/24: BGP upstreams china_unicom -> china_unicom, transtelecom",
        "175.45.176.0/24: BGP upstreams china_unicom, transtelecom -> china_unicom",
        "175.45.179.0/24: BGP upstreams china_unicom, transtelecom -> china_unicom",
    ]


def test_live_json_is_one_document_at_the_end(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, "--json")
    doc = json.loads(out)
    assert [p["upstreams"] for p in doc["prefixes"]] == [
        ["china_unicom"], ["china_unicom"], ["china_unicom", "transtelecom"], ["china_unicom"]
    ]  # fmt: skip
    assert len(doc["changes"]) == 5 and doc["stream_up"] is True and doc["messages"]["applied"] == 4


def test_usage_errors_exit_2(capsys: object) -> None:
    assert main(["bgp", "--duration", "3"]) == 2
    assert main(["bgp", "--live", "--duration", "0"]) == 2
    assert main(["bgp", "--live", "somefile.json"]) == 2


def test_nothing_from_either_source_exits_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.toml"
    # Port 9 on loopback: nothing listens there, so both connections are refused at once.
    config.write_text(
        "[bgp]\nris_live_url = 'ws://127.0.0.1:9/'\nripestat_url = 'http://127.0.0.1:9/data/'\n"
    )
    assert main(["bgp", "--live", "--duration", "1", "--config", str(config)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("nkprobe bgp: no BGP data: RIPEstat (http://127.0.0.1:9/data/)"), lines
