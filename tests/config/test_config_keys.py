"""The declarations of the keys (agent.config.keys), the one section reader, and the record each target
is resolved into."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass

import pytest

from agent.config import Config, PingSection, TargetEntry, TraceSection, file_keys
from agent.config.keys import (
    Flag,
    Groups,
    Integer,
    Items,
    Number,
    Section,
    Tables,
    Text,
    keys_of,
    number,
    text,
)
from agent.config.read import LISTING_ORDER
from agent.config.sections import Reader
from agent.model import Hop, Target
from agent.trace.session import TraceParams


@dataclass(frozen=True)
class Toy:
    """A section as another issue will add one: each key one line."""

    refresh_s: float = number(300.0, gt=0, le=86400)
    owner: str = text("")


def test_a_key_is_one_declared_field() -> None:
    reader = Reader(Config, {}, "/etc/nkprobe")
    values = reader.table(Toy, {"refresh_s": 0, "ownr": "me"}, "toy")
    assert reader.problems == [
        ("toy.ownr", "unknown key; did you mean owner?"),
        ("toy.refresh_s", "must be > 0 and <= 86400"),
    ]
    assert values == {"owner": ""}  # a key that failed is left out, one not given is its default
    reader = Reader(Config, {}, "/etc/nkprobe")
    values = reader.table(Toy, {"refresh_s": 60}, "toy")
    assert not reader.problems
    assert reader.build(Toy, values or {}) == Toy(refresh_s=60.0)


def test_each_key_is_declared_as_the_type_its_field_holds() -> None:
    expected = {Number: float, Integer: int, Text: str, Flag: bool, Items: tuple, Groups: dict, Tables: tuple}
    sections = [Config] + [key.cls for key, _ in keys_of(Config).values() if isinstance(key, Section)]
    checked = 0
    for cls in (*sections, TargetEntry):
        hints = typing.get_type_hints(cls)
        for name, (key, _) in keys_of(cls).items():
            if isinstance(key, Section):
                assert hints[name] is key.cls
                continue
            kind = expected.get(type(key))
            if kind is None:  # Required: any value, judged by its check
                continue
            held = {typing.get_origin(t) or t for t in typing.get_args(hints[name])} or {hints[name]}
            held.add(typing.get_origin(hints[name]) or hints[name])
            assert kind in held, f"{cls.__name__}.{name}: {hints[name]} declared {type(key).__name__}"
            checked += 1
    assert checked > 40


def test_problems_are_listed_by_every_section() -> None:
    assert sorted(LISTING_ORDER) == sorted(file_keys()[""])


def test_a_config_made_in_code_resolves_its_targets_against_its_sections() -> None:
    config = Config(
        ping=PingSection(protocols=("icmp",), port=8080),
        trace=TraceSection(protocol="udp"),
        targets=(Target("175.45.176.71", "kcna"), TargetEntry("175.45.176.15", port=53, protocol="tcp")),
    )
    kcna, ns1 = config.targets
    assert (kcna.name, kcna.ping_protocols, kcna.ping_port, kcna.trace_protocol, kcna.trace_port) == (
        "kcna", ("icmp",), 8080, "udp", None,
    )  # fmt: skip
    assert (ns1.ping_port, ns1.trace_protocol, ns1.trace_port) == (53, "tcp", 53)
    # Made again with another [trace], the same entries resolve afresh.
    again = dataclasses.replace(config, trace=TraceSection(protocol="tcp", port=443))
    assert [(t.trace_protocol, t.trace_port) for t in again.targets] == [("tcp", 443), ("tcp", 53)]
    assert again.target("175.45.176.15", trace_protocol="icmp").trace_port is None
    # An address the file does not list: the sections' values.
    other = again.target("175.45.177.10")
    assert (other.name, other.ping_port, other.trace_port) == ("", 8080, 443)


def test_a_key_kind_is_a_read_only_value() -> None:
    key = Number(gt=0, le=60)
    assert key == Number(gt=0, le=60) and hash(key) == hash(Number(gt=0, le=60))
    assert key != Number(gt=0, le=61) and key != Integer(le=60)
    assert repr(key) == "Number(ge=None, gt=0, le=60)"
    assert repr(Tables(PingSection, not_list="a", not_table="b")) == (
        "Tables(cls=<class 'agent.config.model.PingSection'>, not_list='a', not_table='b')"
    )
    with pytest.raises(AttributeError, match="read-only"):
        key.gt = 1  # type: ignore[misc]


def test_a_section_is_a_frozen_value_as_a_dataclass_would_make_it() -> None:
    @dataclass(frozen=True)
    class Generated:  # what dataclasses would make of PingSection with eq and repr
        interval_s: float = 1.0
        protocols: tuple[str, ...] = ("icmp", "tcp")
        port: int = 80
        timeout_s: float = 2.0

    ping = PingSection(port=443)
    assert ping == PingSection(port=443) and hash(ping) == hash(PingSection(port=443))
    assert ping != PingSection() and ping != Generated(port=443) and ping != TargetEntry("175.45.176.71")
    generated = repr(Generated(port=443))
    assert repr(ping) == "PingSection" + generated[generated.index("(") :]
    assert Config(ping=ping) == Config(ping=PingSection(port=443)) != Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ping.port = 80  # type: ignore[misc]
    assert dataclasses.replace(ping, port=80) == PingSection()
    # The same base serves the trace settings (by TraceSettings) and the model's values.
    trace = TraceSection(port=443)
    assert trace == TraceSection(port=443) != TraceSection() and hash(trace) == hash(TraceSection(port=443))
    assert repr(trace).startswith("TraceSection(max_hops=32, timeout_s=2.0,") and "port=443" in repr(trace)
    params = TraceParams(target="175.45.176.71", port=443)
    assert {params: 1}[TraceParams(target="175.45.176.71", port=443)] == 1 and params != trace
    assert Target("175.45.176.71") != Hop(1) and Hop(1, (), 2) == Hop(1, probes_sent=2) != Hop(2, (), 2)
