"""Whatever a TOML file holds, loading either succeeds or raises ConfigError with key paths: no crash."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import Config, file_keys, loads_config
from agent.errors import ConfigError

KEYS = file_keys()
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "tcp", "icmp", "175.45.176.71", "175.45.176.0/22", "8.8.8.8", "x:1", "a b"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["a", "china_unicom"]), inner)
    ),
    max_leaves=8,
)
sections = {
    name: st.dictionaries(st.sampled_from([*keys, "bogus"]), values, max_size=4)
    for name, keys in KEYS.items()
    if name not in ("", "targets")
}
targets = st.lists(st.dictionaries(st.sampled_from([*KEYS["targets"], "x"]), values, max_size=3), max_size=3)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional={**sections, "targets": targets}))
def test_any_document_loads_or_lists_problems(doc: dict[str, Any]) -> None:
    lines = []
    for section, table in doc.items():
        if section == "targets":
            for item in table:
                lines.append("[[targets]]")
                lines += [f"{k} = {_toml(v)}" for k, v in item.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    try:
        config = loads_config("\n".join(lines) + "\n", source="fuzz.toml")
    except ConfigError as exc:
        assert exc.problems
        assert all(": " in p for p in exc.problems)
        assert "\n" not in str(exc)
    else:
        assert isinstance(config, Config)
