"""`nkprobe asn update|lookup|info` end to end, against a loopback HTTP server only."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.cli import main


def _config(tmp_path: Path, sources: list[str]) -> Path:
    cfg = tmp_path / "config.toml"
    quoted = ", ".join(f'"{s}"' for s in sources)
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n[asn]\nsources = [{quoted}]\n')
    return cfg


def test_update_then_lookup_and_info(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert server.startswith("http://127.0.0.1:")
    cfg = _config(tmp_path, [f"{server}/good.tsv.gz"])
    assert main(["asn", "update", "--config", str(cfg), "--ripestat-url", f"{server}/stat"]) == 0
    out = capsys.readouterr().out
    assert "announced.pfx2as: 5 prefixes" in out and "full-table: 2000 entries (iptoasn)" in out
    assert (tmp_path / "state" / "asn" / "full-table.meta.json").is_file()
    assert main(["asn", "lookup", "--config", str(cfg), "10.0.1.1", "188.43.225.153", "103.35.255.254"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("10.0.1.1\tAS64501\t10.0.1.0/24")
    assert lines[1].startswith("188.43.225.153\tAS20485\t188.43.0.0/16\ttranstelecom")
    assert lines[2] == "103.35.255.254\tunknown"
    assert main(["asn", "info", "--config", str(cfg)]) == 0
    info = capsys.readouterr().out
    # an update replaces the built-in table (agent.asn.configured_table)
    assert "snapshot: 2026-11-25T10:00:00Z" in info and "built-in" not in info


def test_update_failure_exits_1_and_keeps_previous(
    server: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = _config(tmp_path, [f"{server}/good.tsv.gz"])
    assert main(["asn", "update", "--config", str(cfg), "--ripestat-url", f"{server}/stat"]) == 0
    before = (tmp_path / "state" / "asn" / "full-table").read_bytes()
    code = main(
        [
            "asn",
            "update",
            "--config",
            str(cfg),
            "--ripestat-url",
            f"{server}/badstat",
            "--source",
            f"{server}/garbage",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(e.startswith("nkprobe asn update: ") and "previous kept" in e for e in err)
    assert (tmp_path / "state" / "asn" / "full-table").read_bytes() == before


def test_update_asks_the_configured_ripestat_and_the_flag_overrides_it(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _config(tmp_path, [])
    cfg.write_text(cfg.read_text() + f'ripestat_url = "{server}/stat"\n')
    assert main(["asn", "update", "--config", str(cfg)]) == 0  # asn.ripestat_url, no flag
    assert "announced.pfx2as: 5 prefixes" in capsys.readouterr().out
    assert main(["asn", "update", "--config", str(cfg), "--ripestat-url", f"{server}/badstat"]) == 1
    assert "previous kept" in capsys.readouterr().err


def test_config_default_ripestat_is_the_updater_default() -> None:
    from agent.asn.update import RIPESTAT_URL
    from agent.config import DEFAULT_RIPESTAT_URL, Config

    assert Config().asn.ripestat_url == DEFAULT_RIPESTAT_URL == RIPESTAT_URL
