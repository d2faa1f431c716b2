"""What a config key is, declared beside its dataclass field: its type, bounds and check.

A section's field is declared with one of the constructors below instead of a bare default, e.g.

    max_pps: float = number(20.0, gt=0, le=MAX_PPS)

which is a `dataclasses.field` with that default and, in its metadata, the key's kind (`Number(gt=0,
le=1000)`). The section reader (agent.config.sections) reads every section from these declarations
alone: a field without one is not a key of the file (a `Config`'s `source_path`, [trace]'s `window`).
Each kind reads a TOML value: returns it (normalised) or raises `Problem` with the message for its key
path; a kind that holds other values (a list, a table) reports theirs by their own paths and raises
`Invalid`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, field, fields
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from agent.config.checks import Problem, bounds, group_problem
from agent.config.checks import integer as integer_value

if TYPE_CHECKING:
    from agent.config.sections import Reader

_T = TypeVar("_T")
KEY = "nkprobe.config.key"  # the metadata entry of a field that is a key of the file
Check = Callable[[Any], Any]  # a value -> the value, normalised; raises Problem (agent.config.checks)


class Invalid(Exception):
    """A value held other values that failed; each is reported already, by its own key path."""


class Key:
    """A key of the file: a value object, read-only once made, equal to another of its kind and settings.

    Plain classes with `__slots__`, not frozen dataclasses like the sections they declare: a dataclass
    compiles six methods per class at import (0.3 ms each class on this machine, Python 3.11), and the
    eleven kinds were 3 ms of every `nkprobe trace`'s start-up (bench/startup.py); these few lines give
    them the same value semantics once, for all of them. Each kind lists its settings in `__slots__`
    and sets them in `__init__` through `_set`.
    """

    __slots__: tuple[str, ...] = ()
    _settings: tuple[str, ...] = ()  # every setting of the kind, its bases' first (set per subclass)

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        base: type[Key] = cls.__mro__[1]
        cls._settings = base._settings + tuple(cls.__dict__.get("__slots__", ()))

    def _set(self, **settings: Any) -> None:
        for name, value in settings.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot delete {name}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._settings)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__, self._values()))

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._settings)
        return f"{type(self).__name__}({settings})"

    def read(self, value: Any, where: str, reader: Reader) -> Any:
        raise NotImplementedError

    def absent(self, default: Any, reader: Reader) -> Any:
        """The value when the file does not set the key."""
        return default

    def build(self, value: Any, reader: Reader) -> Any:
        """The field's value from what `read` returned, once the whole file is known to be valid."""
        return value


class Number(Key):
    __slots__ = ("ge", "gt", "le")
    gt: float | None
    ge: float | None
    le: float | None

    def __init__(self, gt: float | None = None, ge: float | None = None, le: float | None = None) -> None:
        self._set(gt=gt, ge=ge, le=le)

    def read(self, value: Any, where: str, reader: Reader) -> float:
        # bool is an int in Python; `max_pps = true` is a mistake, not 1.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise Problem("must be a number of seconds" if where.endswith("_s") else "must be a number")
        gt, ge, le = self.gt, self.ge, self.le
        if (
            (gt is not None and value <= gt)
            or (ge is not None and value < ge)
            or (le is not None and value > le)
        ):
            raise Problem(bounds(ge, gt, le))
        return float(value)


class Integer(Key):
    __slots__ = ("ge", "le")
    ge: int | None
    le: int | None

    def __init__(self, ge: int | None = None, le: int | None = None) -> None:
        self._set(ge=ge, le=le)

    def read(self, value: Any, where: str, reader: Reader) -> int:
        return integer_value(value, self.ge, self.le)


class Text(Key):
    """A string; `check` (agent.config.checks) for what more it must be."""

    __slots__ = ("check", "nonempty", "path")
    nonempty: bool
    check: Check | None
    path: bool  # a file name, taken relative to the config's directory

    def __init__(self, nonempty: bool = False, check: Check | None = None, path: bool = False) -> None:
        self._set(nonempty=nonempty, check=check, path=path)

    def read(self, value: Any, where: str, reader: Reader) -> str:
        if not isinstance(value, str):
            raise Problem("must be a string")
        if self.nonempty and not value.strip():
            raise Problem("must not be empty")
        return value if self.check is None else self.check(value)

    def build(self, value: Any, reader: Reader) -> Any:
        return reader.resolve(value) if self.path else value


class Flag(Key):
    __slots__ = ()

    def read(self, value: Any, where: str, reader: Reader) -> bool:
        if not isinstance(value, bool):
            raise Problem("must be true or false")
        return value


class Required(Key):
    """A key every table must have (a target's address), `missing` the message when one lacks it. Any
    TOML value, which `check` alone judges ("not an IPv4 address", whatever it is)."""

    __slots__ = ("check", "missing")
    check: Check
    missing: str

    def __init__(self, check: Check, missing: str) -> None:
        self._set(check=check, missing=missing)

    def read(self, value: Any, where: str, reader: Reader) -> Any:
        return self.check(value)


class Items(Key):
    """A list, each item passing `item`; `unique`: an item listed twice is a problem."""

    __slots__ = ("item", "nonempty", "path", "unique")
    item: Check
    nonempty: bool
    unique: bool
    path: bool  # file names, taken relative to the config's directory

    def __init__(self, item: Check, nonempty: bool = False, unique: bool = True, path: bool = False) -> None:
        self._set(item=item, nonempty=nonempty, unique=unique, path=path)

    def read(self, value: Any, where: str, reader: Reader) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Problem("must be a list")
        if self.nonempty and not value:
            raise Problem("must not be empty")
        out: list[Any] = []
        bad = False
        for index, item in enumerate(value):
            at = f"{where}[{index}]"
            try:
                checked = self.item(item)
            except Problem as exc:
                reader.add(at, str(exc))
                bad = True
                continue
            if self.unique and checked in out:
                reader.add(at, f"{checked} is listed twice")
                bad = True
                continue
            out.append(checked)
        if bad:
            raise Invalid
        return tuple(out)

    def build(self, value: Any, reader: Reader) -> Any:
        return tuple(reader.resolve(v) for v in value) if self.path else value


class Groups(Key):
    """A table of upstream group name -> non-empty list of `item` ([upstreams], [borders]...).

    `upstream`: the groups must be groups of [upstreams]; a default (the key absent) then keeps only
    the groups that exist, so a config with its own [upstreams] is not blamed for the shipped suffixes
    or borders of groups it does not have. `empty`: the message when the table names no group at all
    (else an empty table is fine). Groups that fail are reported and left out; the rest are read.
    """

    __slots__ = ("empty", "item", "upstream", "what")
    item: Check
    what: str  # what an item is, for the message
    upstream: bool
    empty: str

    def __init__(self, item: Check, what: str, upstream: bool = False, empty: str = "") -> None:
        self._set(item=item, what=what, upstream=upstream, empty=empty)

    def read(self, value: Any, where: str, reader: Reader) -> dict[str, tuple[Any, ...]]:
        if not isinstance(value, dict):
            reader.add(where, f"must be a table of group = [{self.what}, ...]")
            return {}
        if self.empty and not value:
            reader.add(where, self.empty)
        known = reader.upstream_groups() if self.upstream else None
        items = Items(self.item, nonempty=True)
        out: dict[str, tuple[Any, ...]] = {}
        for group, listed in value.items():
            at = f"{where}.{group}"
            try:
                group_problem(group, known)
                out[group] = items.read(listed, at, reader)
            except Problem as exc:
                reader.add(at, str(exc))
            except Invalid:
                pass
        return out

    def absent(self, default: Any, reader: Reader) -> Any:
        known = reader.upstream_groups() if self.upstream else None
        return dict(default) if known is None else {g: v for g, v in default.items() if g in known}


class Nested(Key):
    """A key whose value is read by the keys of dataclass `cls`."""

    __slots__ = ("cls",)
    cls: type

    def __init__(self, cls: type) -> None:
        self._set(cls=cls)


class Section(Nested):
    """A table ([agent], [trace]...)."""

    __slots__ = ()

    def read(self, value: Any, where: str, reader: Reader) -> dict[str, Any]:
        if not isinstance(value, dict):
            reader.add(where, "must be a table")
            value = {}
        return reader.table(self.cls, value, where) or {}

    def absent(self, default: Any, reader: Reader) -> Any:
        return reader.table(self.cls, {}, "")

    def build(self, value: Any, reader: Reader) -> Any:
        return reader.build(self.cls, value)


class Tables(Nested):
    """An array of tables ([[targets]]); `not_list` and `not_table`: the messages when it is not."""

    __slots__ = ("not_list", "not_table")
    not_list: str
    not_table: str

    def __init__(self, cls: type, not_list: str, not_table: str) -> None:
        self._set(cls=cls, not_list=not_list, not_table=not_table)

    def read(self, value: Any, where: str, reader: Reader) -> list[dict[str, Any] | None]:
        if not isinstance(value, list):
            raise Problem(self.not_list)
        out: list[dict[str, Any] | None] = []
        for index, item in enumerate(value):
            at = f"{where}[{index}]"
            if not isinstance(item, dict):
                reader.add(at, self.not_table)
                out.append(None)
                continue
            out.append(reader.table(self.cls, item, at))
        return out

    def absent(self, default: Any, reader: Reader) -> Any:
        return []

    def build(self, value: Any, reader: Reader) -> Any:
        return tuple(reader.build(self.cls, v) for v in value if v is not None)


# -- the declarations: a field with its default and its key --------------------------------------------


def _key(default: _T, key: Key) -> _T:
    return field(default=default, metadata={KEY: key})


def number(
    default: float, *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> float:
    """A number (a duration in seconds if its key ends in `_s`) within the bounds given."""
    return _key(default, Number(gt=gt, ge=ge, le=le))


def integer(default: _T, *, ge: int | None = None, le: int | None = None) -> _T:
    """An integer within the bounds given (a default of None: the key is an override)."""
    return _key(default, Integer(ge=ge, le=le))


def text(default: _T, *, nonempty: bool = False, check: Check | None = None, path: bool = False) -> _T:
    """A string that passes `check`; `path`: a file name, relative to the config's directory."""
    return _key(default, Text(nonempty=nonempty, check=check, path=path))


def flag(default: bool) -> bool:
    return _key(default, Flag())


def required(check: Check, *, missing: str) -> Any:
    """A key every table must have, judged by `check` alone; a table without it is not read further."""
    return field(metadata={KEY: Required(check, missing=missing)})


def items(default: _T, item: Check, *, nonempty: bool = False, path: bool = False) -> _T:
    """A list of values that each pass `item`, none twice."""
    return _key(default, Items(item, nonempty=nonempty, path=path))


def groups(
    default: Mapping[str, tuple[_T, ...]], item: Check, *, what: str, upstream: bool = False, empty: str = ""
) -> dict[str, tuple[_T, ...]]:
    """A table of group = [item, ...] (see `Groups`)."""
    key = Groups(item, what, upstream=upstream, empty=empty)
    return field(default_factory=lambda: dict(default), metadata={KEY: key})


def section(cls: type[_T]) -> _T:
    """A table of the file read by the keys of dataclass `cls`."""
    return field(default_factory=cls, metadata={KEY: Section(cls)})


def tables(cls: type, *, not_list: str, not_table: str) -> Any:
    """An array of tables each read by the keys of dataclass `cls`."""
    return field(default=(), metadata={KEY: Tables(cls, not_list=not_list, not_table=not_table)})


@cache
def keys_of(cls: type) -> dict[str, tuple[Key, Field[Any]]]:
    """The keys of a section (in field order) with their fields. A section may also give keys to fields
    it inherits from a type that is not config (TraceSection's from TraceSettings) in its class
    attribute `inherited_keys`."""
    inherited: Mapping[str, Key] = getattr(cls, "inherited_keys", {})
    out: dict[str, tuple[Key, Field[Any]]] = {}
    for f in fields(cls):
        key = f.metadata.get(KEY) or inherited.get(f.name)
        if key is not None:
            out[f.name] = (key, f)
    return out


def default_of(f: Field[Any]) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default
