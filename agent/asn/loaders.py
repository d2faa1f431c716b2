"""Readers for the two IP-to-AS formats (CAIDA RouteViews prefix2as, iptoasn.com), plain or gzip, detected
from content.

- CAIDA RouteViews prefix2as (https://www.caida.org/catalog/datasets/routeviews-prefix2as/):
  `PREFIX<TAB>LENGTH<TAB>ASN`; ASN is `A_B` for a prefix with several origins (MOAS) or `A,B` for an
  AS set. We take the first as the origin and keep the rest as alternatives.
- iptoasn.com (https://iptoasn.com/, ip2asn-v4.tsv): `START<TAB>END<TAB>ASN<TAB>COUNTRY<TAB>DESCRIPTION`,
  ASN 0 meaning "not routed" (skipped).

The format is chosen from the first data line; every later line must have the same shape. Anything
malformed is an InputError naming the file and line. IPv6 lines (ip2asn-combined, prefix2as6) are skipped.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from agent.asn.table import TableBuilder, ip_to_int
from agent.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
CAIDA = "caida-prefix2as"
IPTOASN = "iptoasn"


def _asn(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"AS number out of range: {text}")
    return value


def _origins(text: str) -> tuple[int, tuple[int, ...]]:
    """CAIDA's ASN column: `A`, `A_B` (multi-origin) or `A,B` (AS set), possibly mixed.

    >>> _origins("4837_9929")
    (4837, (9929,))
    >>> _origins("4837")
    (4837, ())
    """
    parts = text.replace(",", "_").split("_")
    values = [_asn(p) for p in parts]
    return values[0], tuple(dict.fromkeys(v for v in values[1:] if v != values[0]))


def detect(line: str) -> str | None:
    """The format a data line is written in, or None.

    >>> detect("175.45.176.0\\t22\\t131279")
    'caida-prefix2as'
    >>> detect("175.45.176.0\\t175.45.179.255\\t131279\\tKP\\tSTAR-KP Ryugyong-dong")
    'iptoasn'
    >>> detect("<html>") is None
    True
    """
    fields = line.split("\t")
    if len(fields) == 3 and fields[1].strip().isdigit():
        return CAIDA
    if len(fields) >= 3 and ("." in fields[1] or ":" in fields[1]):
        return IPTOASN
    return None


def _is_v6(text: str) -> bool:
    return ":" in text


def _caida(builder: TableBuilder, fields: list[str]) -> None:
    if len(fields) != 3:
        raise ValueError("expected PREFIX<TAB>LENGTH<TAB>ASN")
    prefix, length_text, asn_text = fields
    if _is_v6(prefix):
        return
    length = int(length_text)
    if not 0 <= length <= 32:
        raise ValueError(f"prefix length {length} is not 0..32")
    start = ip_to_int(prefix)
    size = 1 << (32 - length)
    if start % size:
        raise ValueError(f"{prefix}/{length} has host bits set")
    asn, alternatives = _origins(asn_text.strip())
    builder.add(start, start + size - 1, asn, alternatives)


def _iptoasn(builder: TableBuilder, fields: list[str], descriptions: dict[int, str]) -> None:
    if len(fields) < 3:
        raise ValueError("expected START<TAB>END<TAB>ASN<TAB>COUNTRY<TAB>DESCRIPTION")
    if _is_v6(fields[0]):
        return
    start, end, asn = ip_to_int(fields[0]), ip_to_int(fields[1]), _asn(fields[2])
    if end < start:
        raise ValueError("range end is before its start")
    if asn == 0:
        return  # iptoasn.com: "Not routed"
    builder.add(start, end, asn)
    if len(fields) >= 5 and asn not in descriptions:
        descriptions[asn] = fields[4].strip()


def load_lines(
    builder: TableBuilder,
    lines: Iterable[str],
    name: str,
    descriptions: dict[int, str] | None = None,
) -> tuple[str, int]:
    """Add every entry of `lines` to `builder`; returns (format, entries added)."""
    fmt: str | None = None
    before = len(builder)
    names = descriptions if descriptions is not None else {}
    builder.begin_source(name)
    number = 0
    try:
        for number, raw in enumerate(lines, 1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            if fmt is None:
                fmt = detect(line)
                if fmt is None:
                    raise InputError(
                        f"{name}:{number}: not an IP-to-AS line; expected CAIDA prefix2as "
                        "(PREFIX<TAB>LENGTH<TAB>ASN) or iptoasn.com (START<TAB>END<TAB>ASN<TAB>CC<TAB>DESC)"
                    )
            fields = line.split("\t")
            try:
                if fmt == CAIDA:
                    _caida(builder, fields)
                else:
                    _iptoasn(builder, fields, names)
            except ValueError as exc:
                raise InputError(f"{name}:{number}: malformed {fmt} line ({exc}): {line[:80]!r}") from None
    except UnicodeDecodeError:
        raise InputError(
            f"{name}:{number + 1}: not text; expected an IP-to-AS file (plain or gzip)"
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise InputError(f"{name}: truncated or corrupt gzip data after line {number} ({exc})") from None
    if fmt is None:
        raise InputError(f"{name}: no IP-to-AS entries found (empty file?)")
    return fmt, len(builder) - before


def _open(path: Path) -> IO[str]:
    with path.open("rb") as f:
        magic = f.read(2)
    if magic == GZIP_MAGIC:
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def load_file(builder: TableBuilder, path: str | Path, descriptions: dict[int, str] | None = None) -> str:
    """Add the entries of one file (plain or gzip, either format); returns the format name."""
    p = Path(path)
    try:
        stream = _open(p)
    except OSError as exc:
        raise InputError(
            f"cannot read IP-to-AS file {p}: {exc.strerror or exc}; check --asn-file/asn.files"
        ) from None
    with stream:
        fmt, _ = load_lines(builder, _iter(stream), str(p), descriptions)
    return fmt


def _iter(stream: IO[str]) -> Iterator[str]:
    yield from stream
