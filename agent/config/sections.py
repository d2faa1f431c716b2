"""The one section reader: reads any table of the file by the keys its dataclass declares
(agent.config.keys), collecting every problem by its key path, then builds the dataclasses once the
whole file is known to be valid."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from agent.config.checks import Problem
from agent.config.keys import Invalid, Required, default_of, keys_of

UPSTREAMS = "upstreams"  # the root key whose groups [borders] and names.suffixes name (keys.Groups)


class Reader:
    """Reads the TOML document `root` (its relative paths are relative to `base_dir`)."""

    def __init__(self, root_cls: type, root: Mapping[str, Any], base_dir: str) -> None:
        self.root_cls = root_cls
        self.root = root
        self.base_dir = base_dir
        self.problems: list[tuple[str, str]] = []  # (key path, message), in the order found

    def add(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def table(self, cls: type, table: Mapping[str, Any], path: str) -> dict[str, Any] | None:
        """The values of the keys of `cls` in `table`: the default where a key is absent, nothing where
        it failed (rules between keys pass over what is missing). None: a required key is missing,
        and the table is not read further (its other problems would be noise)."""
        keys = keys_of(cls)
        self._unknown(table, tuple(keys), path)
        for name, (key, _) in keys.items():
            if isinstance(key, Required) and name not in table:
                self.add(_join(path, name), key.missing)
                return None
        values: dict[str, Any] = {}
        for name, (key, f) in keys.items():
            where = _join(path, name)
            try:
                if name in table:
                    values[name] = key.read(table[name], where, self)
                else:
                    values[name] = key.absent(default_of(f), self)
            except Problem as exc:
                self.add(where, str(exc))
            except Invalid:
                pass
        return values

    def _unknown(self, table: Mapping[str, Any], allowed: tuple[str, ...], path: str) -> None:
        for key in table:
            if key not in allowed:
                import difflib  # only for a config with a mistake in it (issue 25: not resident otherwise)

                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(allowed)}"
                self.add(_join(path, key), "unknown key" + hint)

    def build(self, cls: type, values: Mapping[str, Any], **other: Any) -> Any:
        """A `cls` from the values `table` read (all of them valid), each key as its kind builds it;
        `other`: its fields that are not keys of the file."""
        built = {name: key.build(values[name], self) for name, (key, _) in keys_of(cls).items()}
        return cls(**built, **other)

    def resolve(self, value: str) -> str:
        """A file name relative to the config's directory, as Prometheus takes its rule files."""
        if not value:
            return value
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(value)))

    def upstream_groups(self) -> set[str] | None:
        """The group names of [upstreams] as the file gives them (failed ones too, so a border of a
        misspelt group is not blamed twice); None when [upstreams] is not a table at all."""
        given = self.root.get(UPSTREAMS)
        if given is None:
            return set(default_of(keys_of(self.root_cls)[UPSTREAMS][1]))
        return set(given) if isinstance(given, dict) else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
