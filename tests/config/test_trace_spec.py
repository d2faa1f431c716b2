"""One rule for a trace's destination port and ProbeSpec, shared by `nkprobe trace` and the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.config import Config, TargetEntry, TraceSection, load_config
from agent.model import Protocol
from agent.probers.base import ProbeSpec, trace_spec
from agent.trace.flow import DEFAULT_PORT

A, B = "175.45.176.71", "175.45.176.15"


def config(protocol: str) -> Config:
    return Config(
        trace=TraceSection(protocol=protocol, port=443, max_hops=20, gap_limit=4, retries=2),
        targets=(TargetEntry(B, port=53),),  # resolved when the Config is made
    )


def spec_of(cfg: Config, target: str, protocol: str | None = None, **overrides: Any) -> ProbeSpec:
    """As `nkprobe trace TARGET [--protocol P]` builds it: the target's record, then its spec."""
    return trace_spec(cfg, cfg.target(target, trace_protocol=protocol), **overrides)


def test_udp_traces_use_the_traceroute_port_not_the_tcp_default() -> None:
    spec = spec_of(config("udp"), A, flows=2)
    assert spec.protocol is Protocol.UDP and spec.port is None  # the prober's default:
    assert DEFAULT_PORT[Protocol.UDP] == 33435
    assert spec_of(config("udp"), B, flows=1).port == 53  # the target's own port wins
    assert spec_of(config("tcp"), A, "udp", flows=1).port is None  # --protocol udp: not [trace] port
    assert spec_of(config("tcp"), B, "udp", flows=1).port == 53


def test_tcp_traces_use_the_target_port_else_the_section_port() -> None:
    assert spec_of(config("tcp"), A, flows=1).port == 443
    assert spec_of(config("tcp"), B, flows=1).port == 53
    assert spec_of(config("tcp"), A, flows=1, port=22).port == 22  # --port
    assert spec_of(config("tcp"), B, "icmp", flows=1).port is None
    assert spec_of(config("udp"), A, "tcp", flows=1).port == 443  # --protocol tcp: [trace] port
    assert spec_of(config("udp"), B, "tcp", flows=1).port == 53


def test_the_trace_section_is_carried_over() -> None:
    spec = spec_of(config("icmp"), A, flows=3, first_flow=6)
    assert (spec.max_hops, spec.gap_limit, spec.retries, spec.flows, spec.first_flow) == (20, 4, 2, 3, 6)
    # [trace] lookahead defaults to gap_limit, in a file as in code; never None: a flow must not send 16
    # TTLs at once
    assert spec.lookahead == 4
    assert spec_of(config("icmp"), A, flows=1, max_hops=9).max_hops == 9


def test_lookahead_defaults_to_gap_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[trace]\ngap_limit = 7\n")
    assert load_config(str(path)).trace.lookahead == 7
    path.write_text("[trace]\ngap_limit = 7\nlookahead = 9\n")
    assert load_config(str(path)).trace.lookahead == 9
    assert load_config(None).trace.lookahead == Config().trace.lookahead == 5


def test_one_trace_settings_type_from_config_to_session() -> None:
    """[trace] (config), ProbeSpec (probers) and TraceParams (the session) extend one TraceSettings, so
    each setting has one declaration and one default, and the config's values reach the session as set."""
    from dataclasses import fields, replace

    from agent.probers.traceroute import params_for
    from agent.trace.session import TraceParams
    from agent.trace.settings import SETTINGS_FIELDS, TraceSettings, settings

    for cls in (TraceSection, ProbeSpec, TraceParams):
        assert issubclass(cls, TraceSettings)
        declared = {f.name: f.default for f in fields(cls) if f.name in SETTINGS_FIELDS}
        assert declared == {f.name: f.default for f in fields(TraceSettings)}, cls
    section = replace(TraceSection(), timeout_s=0.7, near_factor=4.0, silent_max_s=0.9, grace_s=0.3)
    spec = spec_of(Config(trace=section), A, flows=2, max_hops=12)
    params = params_for(spec, 1, "198.18.0.1")
    assert settings(params) == settings(spec) == replace(settings(section), max_hops=12)
    assert (params.target, params.flow_id, params.port, params.src) == (A, 1, 80, "198.18.0.1")
