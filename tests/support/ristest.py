"""Local stand-ins for RIPE's servers, for the live BGP view's tests: a RIS Live WebSocket server (the
`websockets` package's own server) that replays messages and injects faults, and a RIPEstat data API
server (http.server) serving responses built here in the documented envelope. Both listen on 127.0.0.1
only and run on threads of their own, so a test can drive an agent in-process or as a subprocess.

Nothing here ever connects anywhere: tests point `[bgp] ris_live_url` / `ripestat_url` at these.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "bgp"
SEQUENCE_2017 = FIXTURES / "rislive-2017-10-01.jsonl"
SLASH24S = tuple(f"175.45.{n}.0/24" for n in (176, 177, 178, 179))
CU, TTK, DEST_ASN = 4837, 20485, 131279
# The baseline peers of the 2017 sequence (rislive-2017-10-01.jsonl): collector, address, AS.
PEERS = (("rrc00", "193.0.0.56", 3333), ("rrc01", "195.66.224.175", 13030), ("rrc03", "80.249.208.34", 1200))

Routes = Mapping[tuple[str, str], Mapping[str, str]]  # (collector, peer) -> prefix -> "AS path"


def baseline(upstream: int = CU, prefixes: Iterable[str] = SLASH24S) -> dict[tuple[str, str], dict[str, str]]:
    """Every baseline peer sees every /24 via `upstream`."""
    return {(c, ip): dict.fromkeys(prefixes, f"{asn} {upstream} {DEST_ASN}") for c, ip, asn in PEERS}


LAB_SLASH24S = ("198.19.176.0/24", "198.19.177.0/24", "198.19.178.0/24", "198.19.179.0/24")


def lab_ripestat(flip: int = CU) -> RipestatData:
    """RIPEstat as the namespace lab's routing would show it (agent/lab/README.md): two RIS peers, .176
    via the China-like AS, .177 via the TTK-like one, .178 via both (one peer each), .179 via `flip`."""
    ups = {LAB_SLASH24S[0]: (CU, CU), LAB_SLASH24S[1]: (TTK, TTK), LAB_SLASH24S[2]: (CU, TTK)}
    ups[LAB_SLASH24S[3]] = (flip, flip)
    routes = {
        (c, ip): {p: f"{asn} {pair[i]} {DEST_ASN}" for p, pair in ups.items()}
        for i, (c, ip, asn) in enumerate(PEERS[:2])
    }
    data = RipestatData(routes)
    data.seeing = dict.fromkeys(LAB_SLASH24S, (300, 320))
    data.rpki = dict.fromkeys(LAB_SLASH24S, "valid")
    return data


def envelope(call: str, data: Mapping[str, Any], version: str) -> dict[str, Any]:
    """A response in the RIPEstat data API envelope (tests/fixtures/bgp/README.md)."""
    return {
        "messages": [],
        "see_also": [],
        "version": version,
        "data_call_name": call,
        "data_call_status": "supported",
        "cached": False,
        "status": "ok",
        "status_code": 200,
        "time": "2017-10-01T08:00:00",
        "data": dict(data),
    }


class RipestatData:
    """What the RIPEstat server answers; change it between refreshes."""

    def __init__(self, routes: Routes | None = None) -> None:
        self.routes: Routes = routes if routes is not None else baseline()
        self.seeing: dict[str, tuple[int, int]] = dict.fromkeys(SLASH24S, (300, 320))
        self.rpki: dict[str, str] = dict.fromkeys(SLASH24S, "valid")
        self.versions = {"looking-glass": "2.1", "routing-status": "3.3", "rpki-validation": "0.3"}
        self.fault: str | None = None  # None | "garbage" | "envelope" | "http500"

    def answer(self, call: str, query: Mapping[str, str]) -> Any:
        resource = query.get("resource", "")
        if call == "looking-glass":
            rrcs: dict[str, list[dict[str, str]]] = {}
            for (collector, peer), table in self.routes.items():
                for prefix, path in table.items():
                    rrcs.setdefault(collector.upper(), []).append(
                        {"prefix": prefix, "as_path": path, "peer": peer, "asn_origin": path.split()[-1]}
                    )
            data: dict[str, Any] = {
                "rrcs": [{"rrc": r, "peers": peers} for r, peers in rrcs.items()],
                "query_time": "2017-10-01T08:00:00",
                "latest_time": "2017-10-01T08:00:00",
                "parameters": {"resource": resource},
            }
        elif call == "routing-status":
            seeing, total = self.seeing.get(resource, (0, 320))
            data = {
                "resource": resource,
                "visibility": {"v4": {"ris_peers_seeing": seeing, "total_ris_peers": total}},
                "query_time": "2017-10-01T08:00:00",
            }
        elif call == "rpki-validation":
            data = {"resource": resource, "prefix": query.get("prefix"), "status": self.rpki[query["prefix"]]}
        else:
            return None
        return envelope(call, data, self.versions[call])


class RipestatServer:
    """`http://127.0.0.1:PORT/data/<call>/data.json?...` answering from a RipestatData."""

    def __init__(self, data: RipestatData | None = None) -> None:
        self.data = data or RipestatData()
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                parts = urllib.parse.urlsplit(self.path)
                call = parts.path.removeprefix("/data/").removesuffix("/data.json")
                query = dict(urllib.parse.parse_qsl(parts.query))
                fault = outer.data.fault
                if fault == "http500":
                    self.send_error(500)
                    return
                if fault == "garbage":
                    body = b"<html>maintenance</html>"
                elif fault == "envelope":
                    body = json.dumps({"error": "no such thing"}).encode()
                else:
                    doc = outer.data.answer(call, query)
                    if doc is None:
                        self.send_error(404)
                        return
                    body = json.dumps(doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/data/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> RipestatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def refreshes(self) -> int:
        return sum(1 for r in self.requests if r.startswith("/data/looking-glass/"))


class RisLiveServer:
    """A RIS Live stand-in: answers `ris_subscribe` with `ris_subscribe_ok` and `ping` with `pong`, and
    sends what the test gives it. Faults: `refuse` (the next N handshakes get HTTP 503), `drop()` (the
    TCP connection is cut), `stall` (nothing more is sent, pings included), `send("garbage")`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.clients: set[Any] = set()
        self.subscriptions: list[dict[str, Any]] = []
        self.paths: list[str] = []  # the request path of every handshake
        self.connections = 0
        self.pings = 0
        self.refuse = 0
        self.refused = 0
        self.stall = False
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: Any = None
        self.url = ""

    def __enter__(self) -> RisLiveServer:
        self._thread.start()
        self._server = self._call(self._start())
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/ws/"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            # Cut the clients first: a closing handshake with a client whose loop is gone would take the
            # library's close timeout (10 s).
            for ws in list(self.clients):
                ws.transport.abort()
            self._server.close()
            await self._server.wait_closed()

        self._call(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _start(self) -> Any:
        from websockets.asyncio.server import serve

        return await serve(self._handle, "127.0.0.1", 0, process_request=self._process_request)

    def _process_request(self, connection: Any, request: Any) -> Any:
        self.paths.append(str(request.path))
        if self.refuse > 0:
            self.refuse -= 1
            self.refused += 1
            return connection.respond(503, "RIS Live is busy\n")
        return None

    async def _handle(self, ws: Any) -> None:
        self.connections += 1
        self.clients.add(ws)
        try:
            async for raw in ws:
                message = json.loads(raw)
                self.pings += message.get("type") == "ping"
                if self.stall:
                    continue
                if message.get("type") == "ris_subscribe":
                    self.subscriptions.append(message["data"])
                    await ws.send(
                        json.dumps({"type": "ris_subscribe_ok", "data": {"subscription": message["data"]}})
                    )
                elif message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "data": None}))
        except Exception:  # a dropped client ends its handler; the test sees it in `clients`
            pass
        finally:
            self.clients.discard(ws)

    def send(self, message: str | Mapping[str, Any]) -> float:
        """Send to every client; the monotonic time just before (the replay time of a measurement)."""
        text = message if isinstance(message, str) else json.dumps(message)

        async def send_all() -> float:
            at = time.monotonic()
            for ws in list(self.clients):
                await ws.send(text)
            return at

        return float(self._call(send_all()))

    def drop(self) -> None:
        """Cut every client's TCP connection without a closing handshake."""

        async def drop_all() -> None:
            for ws in list(self.clients):
                ws.transport.abort()

        self._call(drop_all())


def sequence_2017() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SEQUENCE_2017.read_text().splitlines() if line.strip()]


def update(peer: tuple[str, str, int], path: Iterable[int] = (), announce: Iterable[str] = (),
           withdraw: Iterable[str] = (), at: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One RIS Live UPDATE of `peer` (collector, address, AS)."""
    collector, address, asn = peer
    announced = list(announce)
    return {
        "type": "ris_message",
        "data": {
            "timestamp": at, "peer": address, "peer_asn": str(asn), "id": f"{collector}-{at}",
            "host": collector, "type": "UPDATE", "path": list(path), "community": [], "origin": "IGP",
            "announcements": [{"next_hop": address, "prefixes": announced}] if announced else [],
            "withdrawals": list(withdraw),
        },
    }  # fmt: skip
