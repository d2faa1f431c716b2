"""`nkprobe asn update` against a local HTTP server on 127.0.0.1 (never anything else)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.asn import load_table, read_sidecar, table_info
from agent.asn.update import run_update

ASNS = (4837, 20485, 131279)


def test_good_update_writes_tables_and_sidecars(server: str, tmp_path: Path) -> None:
    report = run_update(
        tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat", now=lambda: 1.9e9
    )
    assert report.ok, report.failed
    announced = (tmp_path / "announced.pfx2as").read_text()
    assert "219.158.32.0\t20\t4837\n" in announced and "2408:" not in announced
    meta = read_sidecar(tmp_path / "full-table")
    assert (
        meta["source"] == f"{server}/good.tsv.gz" and meta["entries"] == 2000 and meta["format"] == "iptoasn"
    )
    assert meta["snapshot_time"] == 1795600800.0  # Last-Modified
    table = load_table(update_dir=tmp_path)
    assert table.asn("10.0.5.9") == 64500 + 5 % 7 and table.asn("188.43.1.1") == 20485
    info = table_info(table)
    assert f"iptoasn {server}/good.tsv.gz (2000)" in info.description and info.snapshot_time == 1795600800.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/truncated.tsv.gz", "truncated or corrupt gzip"),
        ("/garbage", "not an IP-to-AS line"),
        ("/kill", "1000 of"),
        ("/slow", "timed out"),
        ("/missing", "HTTP 404"),
        ("/small.tsv", "looks truncated"),
    ],
)
def test_failures_keep_the_previous_table(server: str, tmp_path: Path, path: str, words: str) -> None:
    assert run_update(tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat").ok
    before = (tmp_path / "full-table").read_bytes(), (tmp_path / "full-table.meta.json").read_bytes()
    report = run_update(tmp_path, ASNS, [f"{server}{path}"], ripestat_url=f"{server}/stat", timeout_s=0.5)
    assert len(report.failed) == 1 and "previous kept" in report.failed[0]
    assert words in report.failed[0]
    assert (
        (tmp_path / "full-table").read_bytes(),
        (tmp_path / "full-table.meta.json").read_bytes(),
    ) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_first_good_source_wins(server: str, tmp_path: Path) -> None:
    report = run_update(
        tmp_path, ASNS, [f"{server}/garbage", f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat"
    )
    assert report.ok and read_sidecar(tmp_path / "full-table")["source"] == f"{server}/good.tsv.gz"


def test_ripestat_failure_keeps_announced_and_still_updates_full(server: str, tmp_path: Path) -> None:
    assert run_update(tmp_path, ASNS, [], ripestat_url=f"{server}/stat").ok
    before = (tmp_path / "announced.pfx2as").read_bytes()
    report = run_update(tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/badstat")
    assert len(report.failed) == 1 and "not JSON" in report.failed[0]
    assert (tmp_path / "announced.pfx2as").read_bytes() == before
    assert (tmp_path / "full-table").is_file()


def test_nothing_announced_keeps_the_previous_file(server: str, tmp_path: Path) -> None:
    assert run_update(tmp_path, ASNS, [], ripestat_url=f"{server}/stat").ok
    report = run_update(tmp_path, [64999], [], ripestat_url=f"{server}/stat")
    assert len(report.failed) == 1 and "no IPv4 prefix announced" in report.failed[0]
    assert load_table(update_dir=tmp_path, builtin=False).asn("188.43.1.1") == 20485


def test_a_corrupted_updated_file_is_skipped_but_a_configured_one_is_an_error(
    server: str, tmp_path: Path
) -> None:
    import pytest

    from agent.errors import InputError

    assert run_update(tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat").ok
    data = (tmp_path / "full-table").read_bytes()
    (tmp_path / "full-table").write_bytes(data[: len(data) // 2])  # the disk lost half of it
    table = load_table(update_dir=tmp_path)
    assert table.asn("10.0.1.1") is None and table.asn("219.158.33.1") == 4837  # announced still there
    assert "skipped " in table_info(table).description and "truncated or corrupt gzip" in table.description
    with pytest.raises(InputError):
        load_table([tmp_path / "full-table"])


def test_only_http_urls(tmp_path: Path) -> None:
    report = run_update(tmp_path, ASNS, ["file:///etc/passwd"], ripestat_url="ftp://127.0.0.1")
    assert len(report.failed) == 2 and all("only http and https" in f for f in report.failed)


def test_announced_snapshot_is_ripestats_query_end(server: str, tmp_path: Path) -> None:
    assert run_update(tmp_path, ASNS, [], ripestat_url=f"{server}/stat").ok
    assert read_sidecar(tmp_path / "announced.pfx2as")["snapshot_time"] == 1795680000.0  # 2026-11-26T08:00Z


def test_killed_half_way_leaves_the_previous_table_and_a_temp_the_next_run_removes(
    server: str, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    assert run_update(tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat").ok
    before = (tmp_path / "full-table").read_bytes()
    code = (
        "from agent.asn.update import run_update\n"
        f"run_update({str(tmp_path)!r}, [], [{server + '/drip'!r}], ripestat_url={server + '/stat'!r})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 20
        temps: list[Path] = []
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".full-") and _size(p) > 0]
            if temps:
                break
            time.sleep(0.02)
        assert temps, "the download never started"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert (tmp_path / "full-table").read_bytes() == before
    assert load_table(update_dir=tmp_path).asn("10.0.1.1") == 64501
    assert run_update(tmp_path, ASNS, [], ripestat_url=f"{server}/stat").ok
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _size(path: Path) -> int:
    """0 for a file that vanished between listing and stat (a temp renamed or removed meanwhile)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
