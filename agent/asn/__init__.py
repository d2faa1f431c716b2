"""IP-to-AS data: the longest-prefix-match table, its loaders, the built-in table and refreshes.

`configured_table(config)` is what every command and the agent call at start: the files that
`nkprobe asn update` wrote into the state directory (else the built-in table), then the configured
files, later ones winning ties.
No function here touches the network; `agent.asn.update` does, out of band (`nkprobe asn update`).
No lookup service is asked on the probing path (README "Safety"): tables are loaded at start.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.asn.builtin import BUILTIN_DATE, BUILTIN_PFX2AS, BUILTIN_SOURCE
from agent.asn.loaders import load_file, load_lines
from agent.asn.table import AsnMatch, AsnTable, TableBuilder
from agent.errors import InputError

__all__ = [
    "AsnMatch",
    "AsnTable",
    "TableBuilder",
    "TableInfo",
    "builtin_table",
    "configured_table",
    "load_table",
    "read_sidecar",
    "table_info",
    "updated_files",
]

SIDECAR_SUFFIX = ".meta.json"
BUILTIN_SNAPSHOT = datetime.datetime.fromisoformat(BUILTIN_DATE).replace(tzinfo=datetime.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class TableInfo:
    """What the loaded table is made of, for `nkprobe_asn_table_info`-style metrics and for humans."""

    description: str  # e.g. "built-in 2026-11-26 (34); iptoasn https://... (498123)"
    # The oldest snapshot time (epoch seconds) among the loaded files that record one (`asn update`
    # sidecars), else the built-in table's date: an age alert then fires on the stalest part.
    snapshot_time: float | None
    entries: int


def read_sidecar(path: Path) -> dict[str, object]:
    """The JSON sidecar `nkprobe asn update` writes beside a table ({} when absent or unreadable)."""
    try:
        data = json.loads(Path(f"{path}{SIDECAR_SUFFIX}").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


ANNOUNCED_FILE = "announced.pfx2as"
FULL_FILE = "full-table"


def updated_files(update_dir: str | Path | None) -> list[Path]:
    """The tables `nkprobe asn update` left in `update_dir` (Config.asn_update_dir): announced prefixes
    of the configured ASes first, then a full table, which wins ties."""
    if update_dir is None:
        return []
    directory = Path(update_dir)
    return [directory / n for n in (ANNOUNCED_FILE, FULL_FILE) if (directory / n).is_file()]


def _add_builtin(builder: TableBuilder) -> str:
    load_lines(builder, BUILTIN_PFX2AS.splitlines(), BUILTIN_SOURCE)
    return f"{BUILTIN_SOURCE} {BUILTIN_DATE}"


def builtin_table() -> AsnTable:
    builder = TableBuilder()
    description = _add_builtin(builder)
    builder.snapshot_time = BUILTIN_SNAPSHOT
    return builder.build(description)


def load_table(
    files: Iterable[str | Path] = (),
    update_dir: str | Path | None = None,
    builtin: bool = True,
) -> AsnTable:
    """The built-in table, then updated tables from `update_dir`, then `files`; later sources win ties."""
    builder = TableBuilder()
    parts: list[str] = []
    snapshot: float | None = None
    if builtin:
        parts.append(_add_builtin(builder))
    updated = updated_files(update_dir)
    for path in [*updated, *(Path(f) for f in files)]:
        before = len(builder)
        try:
            fmt = load_file(builder, path)
        except InputError as exc:
            if path not in updated:
                raise  # a file the operator named: they must hear about it
            # A file `asn update` wrote (checked before its rename) went bad on disk: start without it
            # rather than not at all, and say so where the table is described.
            builder.truncate(before)
            parts.append(f"skipped {exc}")
            continue
        meta = read_sidecar(path)
        source = meta.get("source")
        label = f"{fmt} {source}" if isinstance(source, str) and source else f"{fmt} {path}"
        parts.append(f"{label} ({len(builder) - before})")
        taken = meta.get("snapshot_time")
        if isinstance(taken, int | float) and (snapshot is None or taken < snapshot):
            snapshot = float(taken)
    if snapshot is None and builtin:
        snapshot = BUILTIN_SNAPSHOT
    builder.snapshot_time = snapshot
    return builder.build("; ".join(parts))


def configured_table(config: object, extra_files: Iterable[str | Path] = ()) -> AsnTable:
    """The one table every command tags with (`trace`, `run`, `classify`, `asn lookup|info`).

    The tables `nkprobe asn update` wrote into `asn.update_dir` when there are any, else the shipped
    built-in table (a fresh install still tags offline), then `asn.files`, then `extra_files`
    (`--asn-file`), later ones winning ties. The built-in table is left out once an update exists: it is
    a hand-written snapshot, and a stale entry of it must not fill a gap the fresh data left on purpose
    (unannounced router space: RIPEstat announced-prefixes of AS4837). `config` is an agent.config.Config
    (duck-typed).
    """
    asn = getattr(config, "asn", None)
    files = [*getattr(asn, "files", ()), *extra_files]
    update_dir = getattr(config, "asn_update_dir", None)
    return load_table(files=files, update_dir=update_dir, builtin=not updated_files(update_dir))


def table_info(table: AsnTable) -> TableInfo:
    return TableInfo(description=table.description, snapshot_time=table.snapshot_time, entries=len(table))
