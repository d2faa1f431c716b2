"""An IPv4-to-AS table with longest-prefix match over flattened, sorted integer ranges.

Every input entry (a CAIDA prefix or an iptoasn.com range) is kept in three parallel `array` columns;
`TableBuilder.build()` flattens nested entries into disjoint segments, each pointing at the most specific
entry covering it, so a lookup is one `bisect` over a packed array of segment starts. A full table of
about 500,000 ranges costs a few megabytes instead of the ~150 MB that Python objects per prefix would.

IPv6 is out of scope: the destination has no IPv6 (README, first section: one IPv4 block) and the loaders skip
IPv6 lines.
"""

from __future__ import annotations

import socket
from array import array
from bisect import bisect_right
from dataclasses import dataclass

_MAX = 0xFFFFFFFF


def ip_to_int(address: str) -> int:
    """The IPv4 address as an integer; ValueError if it is not one.

    >>> ip_to_int("175.45.176.1")
    2939006977
    """
    try:
        packed = socket.inet_pton(socket.AF_INET, address)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv4 address: {address!r}") from None
    return int.from_bytes(packed, "big")


def int_to_ip(value: int) -> str:
    return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))


def range_text(start: int, end: int) -> str:
    """A range as a CIDR prefix when it is one, else as START-END.

    >>> range_text(ip_to_int("175.45.176.0"), ip_to_int("175.45.179.255"))
    '175.45.176.0/22'
    >>> range_text(ip_to_int("10.0.0.1"), ip_to_int("10.0.0.2"))
    '10.0.0.1-10.0.0.2'
    """
    size = end - start + 1
    if size & (size - 1) == 0 and start % size == 0:
        return f"{int_to_ip(start)}/{32 - (size.bit_length() - 1)}"
    return f"{int_to_ip(start)}-{int_to_ip(end)}"


@dataclass(frozen=True, slots=True)
class AsnMatch:
    """The most specific entry covering an address."""

    asn: int
    prefix: str  # the entry as written: "175.45.176.0/22" or "1.2.3.0-1.2.5.255"
    alternatives: tuple[int, ...] = ()  # the other origins of a multi-origin or AS-set entry
    source: str = ""  # the file (or "built-in") it came from


class AsnTable:
    """Longest-prefix match over disjoint segments; build one with `TableBuilder`."""

    def __init__(
        self,
        *,
        entry_start: array[int],
        entry_end: array[int],
        entry_asn: array[int],
        entry_source: array[int],
        alternatives: dict[int, tuple[int, ...]],
        sources: tuple[str, ...],
        seg_start: array[int],
        seg_end: array[int],
        seg_entry: array[int],
        description: str = "",
        snapshot_time: float | None = None,
        cache_size: int = 65536,
    ) -> None:
        self._entry_start = entry_start
        self._entry_end = entry_end
        self._entry_asn = entry_asn
        self._entry_source = entry_source
        self._alternatives = alternatives
        self.sources = sources
        self._seg_start = seg_start
        self._seg_end = seg_end
        self._seg_entry = seg_entry
        self.description = description
        self.snapshot_time = snapshot_time
        self._cache: dict[str, AsnMatch | None] = {}
        self._matches: dict[int, AsnMatch] = {}
        self._cache_size = cache_size

    def __len__(self) -> int:
        """The number of entries loaded (prefixes or ranges)."""
        return len(self._entry_start)

    def _entry_at(self, value: int) -> int:
        i = bisect_right(self._seg_start, value) - 1
        if i >= 0 and value <= self._seg_end[i]:
            return self._seg_entry[i]
        return -1

    def lookup(self, address: str) -> AsnMatch | None:
        """The most specific entry covering `address`, or None (unknown, IPv6 or not an address)."""
        try:
            return self._cache[address]  # one dict probe for the usual hit
        except KeyError:
            pass
        try:
            value = ip_to_int(address)
        except ValueError:
            match = None
        else:
            index = self._entry_at(value)
            match = None if index < 0 else self._match(index)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # bounded: a full clear is cheap and keeps memory flat
        self._cache[address] = match
        return match

    def _match(self, index: int) -> AsnMatch:
        """One shared AsnMatch per entry (built on first use: most of a full table is never hit)."""
        match = self._matches.get(index)
        if match is None:
            match = AsnMatch(
                asn=self._entry_asn[index],
                prefix=range_text(self._entry_start[index], self._entry_end[index]),
                alternatives=self._alternatives.get(index, ()),
                source=self.sources[self._entry_source[index]],
            )
            if len(self._matches) >= self._cache_size:
                self._matches.clear()
            self._matches[index] = match
        return match

    def asn(self, address: str) -> int | None:
        match = self.lookup(address)
        return None if match is None else match.asn

    def prefixes_of(self, asn: int) -> list[str]:
        """Every entry originated by `asn` (first origin), in address order; for checks and tests."""
        return [
            range_text(s, e)
            for s, e, a in sorted(zip(self._entry_start, self._entry_end, self._entry_asn, strict=True))
            if a == asn
        ]


class TableBuilder:
    """Collects entries from several sources; later sources win ties on identical ranges."""

    def __init__(self) -> None:
        self._start: array[int] = array("I")
        self._end: array[int] = array("I")
        self._asn: array[int] = array("I")
        self._source: array[int] = array("H")
        self._alternatives: dict[int, tuple[int, ...]] = {}
        self._sources: list[str] = []
        self._source_index = -1
        self.descriptions: list[str] = []
        self.snapshot_time: float | None = None

    def begin_source(self, name: str) -> None:
        self._sources.append(name)
        self._source_index = len(self._sources) - 1

    def add(self, start: int, end: int, asn: int, alternatives: tuple[int, ...] = ()) -> None:
        if self._source_index < 0:
            self.begin_source("")
        if not 0 <= start <= end <= _MAX:
            raise ValueError(f"bad range {start}-{end}")
        if alternatives:
            self._alternatives[len(self._start)] = alternatives
        self._start.append(start)
        self._end.append(end)
        self._asn.append(asn)
        self._source.append(self._source_index)

    def __len__(self) -> int:
        return len(self._start)

    def truncate(self, count: int) -> None:
        """Forget every entry added after the first `count` (a source that failed half-way)."""
        for column in (self._start, self._end, self._asn, self._source):
            del column[count:]
        for index in [i for i in self._alternatives if i >= count]:
            del self._alternatives[index]

    def build(self, description: str = "") -> AsnTable:
        seg_start, seg_end, seg_entry = _flatten(self._start, self._end)
        return AsnTable(
            entry_start=self._start,
            entry_end=self._end,
            entry_asn=self._asn,
            entry_source=self._source,
            alternatives=self._alternatives,
            sources=tuple(self._sources),
            seg_start=seg_start,
            seg_end=seg_end,
            seg_entry=seg_entry,
            description=description or "; ".join(self.descriptions),
            snapshot_time=self.snapshot_time,
        )


def _flatten(starts: array[int], ends: array[int]) -> tuple[array[int], array[int], array[int]]:
    """Disjoint segments, each owned by the most specific (innermost) entry covering it.

    Entries are visited by start, wider first, earlier first, as one packed integer per entry (about 36
    bytes each, against ~150 for a tuple of three ints); a stack holds the entries still open. An entry
    that starts inside another is more specific; on identical ranges the later one is pushed last and wins.
    """
    n = len(starts)
    bits = max(n.bit_length(), 1)
    mask = (1 << bits) - 1
    keys = [
        (s << (32 + bits)) | ((_MAX - e) << bits) | i
        for i, (s, e) in enumerate(zip(starts, ends, strict=True))
    ]
    keys.sort()
    out_start: array[int] = array("I")
    out_end: array[int] = array("I")
    out_entry: array[int] = array("I")
    stack: list[int] = []  # entry indexes, innermost last
    cur = 0

    def emit(lo: int, hi: int, entry: int) -> None:
        # Merge with the previous segment when it is the same entry and adjacent (after an inner hole).
        if out_entry and out_entry[-1] == entry and out_end[-1] + 1 == lo:
            out_end[-1] = hi
        else:
            out_start.append(lo)
            out_end.append(hi)
            out_entry.append(entry)

    def close_until(x: int) -> None:
        """Emit everything covered in [cur, x) and advance cur to x."""
        nonlocal cur
        while stack and ends[stack[-1]] < x:
            top = stack.pop()
            if cur <= ends[top]:
                emit(cur, ends[top], top)
                cur = ends[top] + 1
        if stack and cur < x:
            emit(cur, x - 1, stack[-1])
        cur = max(cur, x)

    for key in keys:
        index = key & mask
        close_until(starts[index])
        stack.append(index)
    close_until(_MAX + 1)
    return out_start, out_end, out_entry
