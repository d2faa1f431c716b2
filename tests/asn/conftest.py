"""A loopback-only HTTP server serving IP-to-AS fixtures: good, truncated, garbage, slow, cut off."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

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
                json.dumps(
                    {
                        "status": "ok",
                        "data": {
                            "prefixes": prefixes,
                            "resource": str(asn),
                            "query_endtime": "2026-11-26T08:00:00",
                        },
                    }
                ).encode()
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
            self.server.release.wait(10)  # type: ignore[attr-defined]
            self._send(GOOD_GZ)
        elif url.path == "/drip":  # slow enough for a test to kill the downloading process half-way
            self.send_response(200)
            self.send_header("Content-Length", str(len(GOOD_GZ)))
            self.end_headers()
            try:
                for i in range(0, len(GOOD_GZ), 256):
                    if self.server.release.wait(0.05):  # type: ignore[attr-defined]
                        return
                    self.wfile.write(GOOD_GZ[i : i + 256])
                    self.wfile.flush()
            except OSError:
                return
        elif url.path == "/kill":
            self._send(GOOD_GZ[:1000], length=len(GOOD_GZ))  # promises more, then the connection closes
            self.close_connection = True
        else:
            self._send(b"not found", status=404)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.release = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    assert base.startswith("http://127.0.0.1:")  # never anything but loopback
    yield base
    httpd.release.set()  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
