"""`agent.model.record`: a frozen dataclass whose __init__ and frozenness are Record's, compiled once
(issue 25: `nkprobe trace` start-up). It must behave as `@dataclass(frozen=True)` does."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from agent.model import Record, record


@record(slots=True, kw_only=True)
class _Base(Record):
    """Keyword-only settings, checked after __init__ like agent.trace.settings.TraceSettings."""

    limit: int = 3

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be >= 1")


@record(slots=True)
class _Made(_Base):
    """Positional fields after the base's keyword-only ones, a factory and a derived field."""

    name: str
    tags: tuple[str, ...] = field(default_factory=tuple)
    size: int = 0
    seen: list[int] = field(default_factory=list, init=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _PlainBase:
    limit: int = 3


@dataclass(frozen=True, slots=True)
class _Plain(_PlainBase):
    name: str
    tags: tuple[str, ...] = field(default_factory=tuple)
    size: int = 0
    seen: list[int] = field(default_factory=list, init=False, compare=False)


CALLS: list[tuple[tuple[object, ...], dict[str, object]]] = [
    (("a",), {}),
    (("a", ("x",), 5), {}),
    ((), {"name": "a", "limit": 7, "size": 2}),
    (("a",), {"tags": ("y", "z"), "limit": 1}),
]


@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_a_record_is_built_as_the_same_frozen_dataclass_would_be(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    made, plain = _Made(*args, **kwargs), _Plain(*args, **kwargs)  # type: ignore[arg-type]
    assert dataclasses.astuple(made) == dataclasses.astuple(plain)
    assert [f.name for f in dataclasses.fields(made)] == [f.name for f in dataclasses.fields(plain)]
    assert made.seen == [] and made.seen is not _Made("b").seen  # a fresh factory value each time
    assert made == _Made(*args, **kwargs) and hash(made) == hash(_Made(*args, **kwargs))  # type: ignore[arg-type]
    assert dataclasses.replace(made, size=9).size == 9 and dataclasses.replace(made, size=9).name == made.name


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((), {}, "missing required arguments: 'name'"),
        (("a", (), 1, 2), {}, "takes 3 positional arguments, 4 given"),
        (("a",), {"name": "b"}, "multiple values for argument 'name'"),
        (("a",), {"colour": 1}, "unexpected keyword arguments: 'colour'"),
        (("a",), {"seen": [1]}, "unexpected keyword arguments: 'seen'"),  # init=False: not an argument
    ],
)
def test_a_record_refuses_the_calls_a_dataclass_refuses(
    args: tuple[object, ...], kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(TypeError):
        _Plain(*args, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=message):
        _Made(*args, **kwargs)  # type: ignore[arg-type]


def test_a_record_is_frozen_and_checked_after_init() -> None:
    made = _Made("a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "b"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del made.size
    with pytest.raises(ValueError, match="limit must be >= 1"):
        _Made("a", limit=0)
    assert not hasattr(made, "__dict__")  # slots=True holds


def test_record_needs_the_record_base() -> None:
    with pytest.raises(TypeError, match="subclass of Record"):

        @record
        class _Loose:  # type: ignore[type-var]
            x: int = 0
