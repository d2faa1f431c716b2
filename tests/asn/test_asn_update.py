"""`nkprobe asn update` against a local HTTP server on 127.0.0.1 (never anything else)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from agent.asn import load_table, read_sidecar, table_info
from agent.asn.update import run_update

GOOD = (
    "".join(
        f"10.{i >> 8}.{i & 255}.0\t10.{i >> 8}.{i & 255}.255\t{64500 + i % 7}\tZZ\tTEST-AS-{i % 7}\n"
        for i in range(1, 2000)
    )
    + "175.45.176.0\t175.45.179.255\t131279\tKP\tSTAR-KP Ryugyong-dong\n"
)
GOOD_GZ = gzip.compress(GOOD.encode())
PREFIXES = {
    4837: ["219.158.0.0/19", "219.158.32.0/20", "2408:8000::/20"],
    20485: ["188.43.0.0/16", "217.150.32.0/19"],
    131279: ["175.45.176.0/22"],
}
release = threading.Event()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _send(self, body: bytes, status: int = 200, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Last-Modified", "Wed, 25 Nov 2026 10:00:00 GMT")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/stat/data/announced-prefixes/data.json":
            asn = int(parse_qs(url.query)["resource"][0].removeprefix("AS"))
            prefixes = [{"prefix": p, "timelines": []} for p in PREFIXES.get(asn, [])]
            self._send(
                json.dumps({"status": "ok", "data": {"prefixes": prefixes, "resource": str(asn)}}).encode()
            )
        elif url.path == "/badstat/data/announced-prefixes/data.json":
            self._send(b"<html>rate limited</html>")
        elif url.path == "/good.tsv.gz":
            self._send(GOOD_GZ)
        elif url.path == "/truncated.tsv.gz":
            self._send(GOOD_GZ[: len(GOOD_GZ) // 2])
        elif url.path == "/small.tsv":
            self._send(b"1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n")
        elif url.path == "/garbage":
            self._send(b"<html><body>502 Bad Gateway</body></html>\n")
        elif url.path == "/slow":
            release.wait(10)
            self._send(GOOD_GZ)
        elif url.path == "/kill":
            self._send(GOOD_GZ[:1000], length=len(GOOD_GZ))  # promises more, then the connection closes
            self.close_connection = True
        else:
            self._send(b"not found", status=404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    assert base.startswith("http://127.0.0.1:")  # never anything but loopback
    yield base
    release.set()
    httpd.shutdown()
    httpd.server_close()


ASNS = (4837, 20485, 131279)


def test_good_update_writes_tables_and_sidecars(server: str, tmp_path: Path) -> None:
    report = run_update(
        tmp_path, ASNS, [f"{server}/good.tsv.gz"], ripestat_url=f"{server}/stat", now=lambda: 1.5e9
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


def test_only_http_urls(tmp_path: Path) -> None:
    report = run_update(tmp_path, ASNS, ["file:///etc/passwd"], ripestat_url="ftp://127.0.0.1")
    assert len(report.failed) == 2 and all("only http and https" in f for f in report.failed)
