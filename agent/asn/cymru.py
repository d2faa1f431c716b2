"""Optional Team Cymru IP-to-ASN fallback over DNS, for addresses no local table knows. Off by default.

Team Cymru's service (https://www.team-cymru.com/ip-asn-mapping): a TXT query for the reversed address
under origin.asn.cymru.com, e.g. `42.39.158.219.origin.asn.cymru.com`, answers
`"4837 | 219.158.32.0/20 | CN | apnic | 2002-06-03"` (several origins are space-separated).

Never on the probing path (DOMAIN.md): it fails exactly during outages and tells a third party which
addresses we see. So lookups are explicit and blocking (`prefetch`, to run in a thread between rounds),
cached with TTLs and bounded, and the classifier only ever reads the cache (`with_fallback`).
The DNS client is a sans-I/O pair (`build_query`, `parse_txt_answer`, RFC 1035 sections 4.1 and 3.3.14)
plus one small UDP function; tests inject a fake resolver and never touch the network.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from agent.asn.table import AsnMatch, ip_to_int

TxtResolver = Callable[[str, float], list[str]]  # (name, timeout) -> TXT strings; raises OSError
Lookup = Callable[[str], AsnMatch | None]

ORIGIN_ZONE = "origin.asn.cymru.com"
SOURCE = "Team Cymru DNS"
_TXT = 16
_IN = 1


def origin_name(address: str) -> str:
    """The query name for an IPv4 address.

    >>> origin_name("219.158.39.42")
    '42.39.158.219.origin.asn.cymru.com'
    """
    ip_to_int(address)  # ValueError for anything but IPv4
    return ".".join(reversed(address.split("."))) + "." + ORIGIN_ZONE


def parse_origin(txt: str) -> AsnMatch | None:
    """One TXT answer as an AsnMatch; None when it is not in the documented shape.

    >>> parse_origin("4837 9929 | 219.158.32.0/20 | CN | apnic | 2002-06-03")
    AsnMatch(asn=4837, prefix='219.158.32.0/20', alternatives=(9929,), source='Team Cymru DNS')
    """
    fields = [f.strip() for f in txt.strip().strip('"').split("|")]
    if len(fields) < 2:
        return None
    try:
        asns = [int(a) for a in fields[0].split()]
    except ValueError:
        return None
    if not asns or "/" not in fields[1]:
        return None
    return AsnMatch(asns[0], fields[1], tuple(a for a in asns[1:] if a != asns[0]), SOURCE)


def build_query(name: str, query_id: int) -> bytes:
    """A recursive TXT query for `name` (RFC 1035 4.1.1 header, 4.1.2 question)."""
    header = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0)  # RD=1, one question
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split("."))
    return header + labels + b"\x00" + struct.pack("!HH", _TXT, _IN)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        if offset >= len(data):
            raise ValueError("truncated name")
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:  # compression pointer, RFC 1035 4.1.4
            return offset + 2
        offset += 1 + length


def parse_txt_answer(data: bytes, query_id: int) -> list[str]:
    """The TXT strings of a response to `query_id`; ValueError for anything malformed or mismatched."""
    if len(data) < 12:
        raise ValueError("short DNS response")
    rid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    if rid != query_id or not flags & 0x8000:
        raise ValueError("not the response to our query")
    rcode = flags & 0x000F
    if rcode == 3:  # NXDOMAIN: the address is in no announced prefix
        return []
    if rcode:
        raise ValueError(f"DNS error rcode {rcode}")
    offset = 12
    for _ in range(qd):
        offset = _skip_name(data, offset) + 4
    out: list[str] = []
    for _ in range(an):
        offset = _skip_name(data, offset)
        if offset + 10 > len(data):
            raise ValueError("truncated answer")
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", data[offset : offset + 10])
        offset += 10
        rdata = data[offset : offset + length]
        if len(rdata) != length:
            raise ValueError("truncated answer data")
        offset += length
        if rtype != _TXT:
            continue
        i, parts = 0, []
        while i < len(rdata):  # character-strings, RFC 1035 3.3.14
            n = rdata[i]
            parts.append(rdata[i + 1 : i + 1 + n].decode("utf-8", "replace"))
            i += 1 + n
        out.append("".join(parts))
    return out


def _nameserver(path: str = "/etc/resolv.conf") -> str:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return fields[1]
    except OSError:
        pass
    return "127.0.0.1"


def udp_txt_resolver(server: str | None = None, port: int = 53) -> TxtResolver:
    """A TXT resolver that asks `server` (default: the first nameserver of /etc/resolv.conf) over UDP."""

    def resolve(name: str, timeout: float) -> list[str]:
        query_id = random.randrange(1 << 16)
        family = socket.AF_INET6 if ":" in (server or _nameserver()) else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((server or _nameserver(), port))
            sock.send(build_query(name, query_id))
            deadline = time.monotonic() + timeout
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data = sock.recv(4096)  # socket.timeout (an OSError) ends it
                try:
                    return parse_txt_answer(data, query_id)
                except ValueError as exc:
                    if "not the response" in str(exc):
                        continue  # a stray datagram; keep waiting for ours
                    raise OSError(str(exc)) from None

    return resolve


class CymruLookup:
    """Cached Team Cymru origins: `prefetch` asks (blocking, off the probing path), `cached` reads."""

    def __init__(
        self,
        resolver: TxtResolver,
        *,
        timeout_s: float = 2.0,
        max_entries: int = 4096,
        ttl_s: float = 86400.0,
        negative_ttl_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = resolver
        self._timeout_s = timeout_s
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[AsnMatch | None, float]] = OrderedDict()
        self.queries = 0
        self.failures = 0

    def _fresh(self, address: str) -> tuple[AsnMatch | None] | None:
        entry = self._cache.get(address)
        if entry is None or self._clock() >= entry[1]:
            return None
        return (entry[0],)

    def cached(self, address: str) -> AsnMatch | None:
        hit = self._fresh(address)
        return None if hit is None else hit[0]

    def prefetch(self, addresses: Iterable[str], budget_s: float = 10.0) -> int:
        """Ask for every address not freshly cached, within `budget_s` in all; returns how many were asked."""
        start = self._clock()
        asked = 0
        for address in dict.fromkeys(addresses):
            if self._fresh(address) is not None:
                continue
            if self._clock() - start >= budget_s:
                break
            try:
                name = origin_name(address)
            except ValueError:
                continue
            asked += 1
            self.queries += 1
            try:
                answers = self._resolver(name, self._timeout_s)
            except OSError:
                self.failures += 1  # not cached: a failure during an outage must not stick for a day
                continue
            match = next((m for m in map(parse_origin, answers) if m is not None), None)
            ttl = self._ttl_s if match is not None else self._negative_ttl_s
            self._cache[address] = (match, self._clock() + ttl)
            self._cache.move_to_end(address)
            while len(self._cache) > self._max_entries:
                self._cache.popitem(last=False)
        return asked


def with_fallback(lookup: Lookup, cymru: CymruLookup | None) -> Lookup:
    """`lookup`, then (for what it does not know) Cymru's cache; never a network query."""
    if cymru is None:
        return lookup

    def combined(address: str) -> AsnMatch | None:
        found = lookup(address)
        return found if found is not None else cymru.cached(address)

    return combined
