"""`nkprobe asn update`: refresh the IP-to-AS data on disk, out of band (never on the probing path).

Two parts, each all-or-nothing:
1. the announced prefixes of the configured ASes (every upstream group and destination.asn) from the
   RIPEstat data API, `GET <base>/data/announced-prefixes/data.json?resource=AS<n>`
   (https://stat.ripe.net/docs/data-api/api-endpoints/announced-prefixes), written as CAIDA prefix2as;
2. if `asn.sources` names any, a full table (iptoasn.com or CAIDA prefix2as, plain or gzip): the first
   source that downloads and parses completely.
Each result is written atomically (temp file in the same directory, fsync, rename, fsync of the
directory) with a JSON sidecar recording its source and snapshot time. Whatever fails leaves the
previous file untouched: a half-downloaded or garbage table never replaces a good one.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import hashlib
import http.client
import ipaddress
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from agent.asn import ANNOUNCED_FILE, FULL_FILE, SIDECAR_SUFFIX, read_sidecar
from agent.asn.loaders import load_file
from agent.asn.table import TableBuilder
from agent.errors import InputError

RIPESTAT_URL = "https://stat.ripe.net"
USER_AGENT = "nkprobe-asn-update (+https://github.com/; measurement of North Korea's upstreams)"
CHUNK = 1 << 16
MAX_BYTES = 256 << 20  # a full iptoasn table is ~10 MB gzip, ~30 MB plain: far below
# A new full table with less than this share of the previous one's entries is suspect (a truncated
# but well-formed download, an error page listing a handful of prefixes): keep the old one.
MIN_RATIO = 0.5


class UpdateError(Exception):
    """One part of the update failed; the previous data is kept."""


@dataclass
class UpdateReport:
    written: list[str] = field(default_factory=list)  # one line per file written
    failed: list[str] = field(default_factory=list)  # one line per part that failed

    @property
    def ok(self) -> bool:
        return not self.failed


Opener = Callable[[str, float], Any]  # (url, timeout) -> a response with .read(n), .headers, .close()


def _urlopen(url: str, timeout: float) -> Any:
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise UpdateError(f"{url}: only http and https URLs are fetched")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # scheme checked above


def _download(url: str, out: IO[bytes], opener: Opener, timeout_s: float, clock: Callable[[], float]) -> Any:
    """Stream `url` into `out` within `timeout_s` overall; returns the response headers."""
    deadline = clock() + timeout_s
    try:
        response = opener(url, timeout_s)
    except urllib.error.HTTPError as exc:
        raise UpdateError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise UpdateError(f"{url}: {reason}") from None
    # read1 returns what has arrived instead of blocking until CHUNK bytes: the overall deadline is
    # checked while a slow server drips, and the temp file grows as the data comes.
    read = getattr(response, "read1", None) or response.read
    try:
        total = 0
        while True:
            if clock() > deadline:
                raise UpdateError(f"{url}: took longer than {timeout_s:g} s")
            try:
                chunk = read(CHUNK)
            except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, cut-offs
                raise UpdateError(f"{url}: download broke off after {total} bytes ({exc!r})") from None
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BYTES:
                raise UpdateError(f"{url}: larger than {MAX_BYTES >> 20} MB")
            out.write(chunk)
            out.flush()
        headers = response.headers
    finally:
        response.close()
    expected = headers.get("Content-Length") if headers is not None else None
    if expected is not None and expected.isdigit() and int(expected) != total:
        raise UpdateError(f"{url}: got {total} of {expected} bytes")
    return headers


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(temp: Path, final: Path, meta: dict[str, Any]) -> None:
    """Rename the checked temp file into place, then its sidecar; fsync both and the directory."""
    with temp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(temp, final)
    sidecar = Path(f"{final}{SIDECAR_SUFFIX}")
    with tempfile.NamedTemporaryFile("w", dir=final.parent, prefix=".meta-", delete=False) as side:
        json.dump(meta, side, indent=1, sort_keys=True)
        side.write("\n")
        side.flush()
        os.fsync(side.fileno())
    os.replace(side.name, sidecar)
    _fsync_dir(final.parent)


def _previous_entries(path: Path) -> int | None:
    value = read_sidecar(path).get("entries")
    return value if isinstance(value, int) and path.is_file() else None


def _snapshot_time(headers: Any, now: float) -> float:
    modified = headers.get("Last-Modified") if headers is not None else None
    if modified:
        with contextlib.suppress(TypeError, ValueError):
            return email.utils.parsedate_to_datetime(modified).timestamp()
    return now


def update_full_table(
    directory: Path,
    sources: Iterable[str],
    *,
    opener: Opener = _urlopen,
    timeout_s: float = 300.0,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> str:
    """Download the first source that parses completely into `directory/full-table`; returns a summary."""
    final = directory / FULL_FILE
    problems: list[str] = []
    for url in sources:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".full-")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                headers = _download(url, out, opener, timeout_s, clock)
            builder = TableBuilder()
            try:
                fmt = load_file(builder, temp)
            except InputError as exc:
                raise UpdateError(f"{url}: {str(exc).replace(str(temp), 'download')}") from None
            entries = len(builder)
            previous = _previous_entries(final)
            if previous and entries < previous * MIN_RATIO:
                raise UpdateError(f"{url}: only {entries} entries against {previous} before; looks truncated")
            digest = hashlib.sha256(temp.read_bytes()).hexdigest()
            meta = {
                "source": url,
                "format": fmt,
                "entries": entries,
                "sha256": digest,
                "fetched_at": now(),
                "snapshot_time": _snapshot_time(headers, now()),
            }
            _commit(temp, final, meta)
            return f"{final}: {entries} entries ({fmt}) from {url}"
        except UpdateError as exc:
            problems.append(str(exc))
        finally:
            temp.unlink(missing_ok=True)
    raise UpdateError("; ".join(problems) or "no source configured")


def _announced(
    url: str, opener: Opener, timeout_s: float, clock: Callable[[], float]
) -> tuple[list[str], float | None]:
    """The IPv4 prefixes RIPEstat says an AS announces, and the end of its query window (epoch s)."""
    with tempfile.SpooledTemporaryFile(max_size=4 << 20) as buf:
        _download(url, buf, opener, timeout_s, clock)
        buf.seek(0)
        raw = buf.read()
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise UpdateError(f"{url}: not JSON (RIPEstat announced-prefixes expected)") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("prefixes"), list):
        raise UpdateError(f"{url}: no data.prefixes list in the answer (status {doc.get('status')!r})")
    out: list[str] = []
    for item in data["prefixes"]:
        prefix = item.get("prefix") if isinstance(item, dict) else None
        if not isinstance(prefix, str) or "/" not in prefix:
            raise UpdateError(f"{url}: malformed prefix entry {item!r}")
        if ":" not in prefix:
            out.append(prefix)
    return out, _iso_time(data.get("query_endtime"))


def _iso_time(value: object) -> float | None:
    """RIPEstat's times ("2026-11-26T08:00:00", UTC) as epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def update_announced(
    directory: Path,
    asns: Iterable[int],
    *,
    base_url: str = RIPESTAT_URL,
    opener: Opener = _urlopen,
    timeout_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> str:
    """Announced prefixes of every AS in `asns`, as one prefix2as file; all ASes or nothing."""
    lines: list[str] = []
    counts: dict[int, int] = {}
    snapshot: float | None = None
    for asn in sorted(set(asns)):
        url = f"{base_url.rstrip('/')}/data/announced-prefixes/data.json?resource=AS{asn}"
        prefixes, taken = _announced(url, opener, timeout_s, clock)
        if taken is not None:
            snapshot = taken if snapshot is None else min(snapshot, taken)
        counts[asn] = len(prefixes)
        for prefix in prefixes:
            try:
                net = ipaddress.IPv4Network(prefix)
            except ValueError:
                raise UpdateError(f"{url}: malformed prefix {prefix!r}") from None
            lines.append(f"{net.network_address}\t{net.prefixlen}\t{asn}\n")
    if not lines:
        # An empty table would be worse than an old one (and is no table: the loaders refuse it).
        raise UpdateError(f"{base_url}: no IPv4 prefix announced by any of the ASes asked ({len(counts)})")
    final = directory / ANNOUNCED_FILE
    fd, name = tempfile.mkstemp(dir=directory, prefix=".announced-")
    temp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write("# RIPEstat announced-prefixes, written by nkprobe asn update\n")
            out.writelines(lines)
        meta = {
            "source": f"{base_url.rstrip('/')}/data/announced-prefixes",
            "format": "caida-prefix2as",
            "entries": len(lines),
            "per_asn": {str(k): v for k, v in counts.items()},
            "fetched_at": now(),
            "snapshot_time": snapshot if snapshot is not None else now(),
        }
        _commit(temp, final, meta)
    finally:
        temp.unlink(missing_ok=True)
    summary = ", ".join(f"AS{k} {v}" for k, v in counts.items())
    return f"{final}: {len(lines)} prefixes ({summary}) from {base_url}"


TEMP_PREFIXES = (".full-", ".announced-", ".meta-")


def _remove_stale_temps(directory: Path) -> None:
    """Temp files of an update that was killed half-way (the rename never happened): never read, removed."""
    for path in directory.iterdir():
        if path.name.startswith(TEMP_PREFIXES) and path.is_file():
            path.unlink(missing_ok=True)


def run_update(
    update_dir: str | Path,
    asns: Iterable[int],
    sources: Iterable[str],
    *,
    ripestat_url: str = RIPESTAT_URL,
    opener: Opener = _urlopen,
    timeout_s: float = 300.0,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> UpdateReport:
    """Both parts; a failure in one does not stop the other. Creates `update_dir` if needed."""
    directory = Path(update_dir)
    directory.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(directory)
    report = UpdateReport()
    try:
        report.written.append(
            update_announced(
                directory,
                asns,
                base_url=ripestat_url,
                opener=opener,
                timeout_s=timeout_s,
                clock=clock,
                now=now,
            )
        )
    except UpdateError as exc:
        report.failed.append(f"announced prefixes not updated, previous kept: {exc}")
    sources = list(sources)
    if sources:
        try:
            report.written.append(
                update_full_table(
                    directory, sources, opener=opener, timeout_s=timeout_s, clock=clock, now=now
                )
            )
        except UpdateError as exc:
            report.failed.append(f"full table not updated, previous kept: {exc}")
    return report
