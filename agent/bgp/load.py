"""Reading BGP snapshot files (RIPEstat responses saved as JSON, optionally gzip-compressed) from disk.
Never over the network: the agent reads what an operator or a timer saved (deploy/README.md)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping

from agent.bgp.ripestat import Document, parse_document
from agent.bgp.view import BgpCheck, BgpView, build_view
from agent.errors import InputError


def read_document(path: str) -> Document:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise InputError(f"cannot read BGP snapshot {path}: {exc.strerror}; check [bgp] snapshot") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: broken gzip file ({exc}); download it again") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({exc}); save the RIPEstat response as it came") from None
    return parse_document(doc, path)


def load_view(paths: Iterable[str], destination_asn: int, prefixes: Iterable[str]) -> BgpView:
    return build_view((read_document(p) for p in paths), destination_asn, prefixes)


def load_check(
    paths: Iterable[str], destination_asn: int, prefixes: Iterable[str], groups: Mapping[str, Iterable[int]]
) -> BgpCheck | None:
    """The agent's cross-check from [bgp] snapshot; None when no file is configured."""
    files = list(paths)
    if not files:
        return None
    return BgpCheck.of(load_view(files, destination_asn, prefixes), groups)
