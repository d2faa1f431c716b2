"""One rule for a trace's destination port and ProbeSpec, shared by `nkprobe trace` and the agent."""

from __future__ import annotations

from pathlib import Path

from agent.config import Config, TargetOptions, TraceSection, load_config
from agent.model import Protocol
from agent.probers.base import trace_spec
from agent.trace.flow import DEFAULT_PORT

A, B = "175.45.176.71", "175.45.176.15"


def config(protocol: str) -> Config:
    return Config(
        trace=TraceSection(protocol=protocol, port=443, max_hops=20, gap_limit=4, retries=2),
        target_options={B: TargetOptions(port=53)},
    )


def test_udp_traces_use_the_traceroute_port_not_the_tcp_default() -> None:
    spec = trace_spec(config("udp"), A, flows=2)
    assert spec.protocol is Protocol.UDP and spec.port is None  # the prober's default:
    assert DEFAULT_PORT[Protocol.UDP] == 33435
    assert trace_spec(config("udp"), B, flows=1).port == 53  # the target's own port wins


def test_tcp_traces_use_the_target_port_else_the_section_port() -> None:
    assert trace_spec(config("tcp"), A, flows=1).port == 443
    assert trace_spec(config("tcp"), B, flows=1).port == 53
    assert trace_spec(config("tcp"), A, flows=1, port=22).port == 22  # --port
    assert trace_spec(config("tcp"), B, flows=1, protocol=Protocol.ICMP).port is None


def test_the_trace_section_is_carried_over() -> None:
    spec = trace_spec(config("icmp"), A, flows=3, first_flow=6)
    assert (spec.max_hops, spec.gap_limit, spec.retries, spec.flows, spec.first_flow) == (20, 4, 2, 3, 6)
    assert spec.lookahead == 5  # TraceSection's default; never None: a flow must not send 16 TTLs at once
    assert trace_spec(config("icmp"), A, flows=1, max_hops=9).max_hops == 9


def test_lookahead_defaults_to_gap_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[trace]\ngap_limit = 7\n")
    assert load_config(str(path)).trace.lookahead == 7
    path.write_text("[trace]\ngap_limit = 7\nlookahead = 9\n")
    assert load_config(str(path)).trace.lookahead == 9
    assert load_config(None).trace.lookahead == Config().trace.lookahead == 5


def test_the_three_trace_settings_types_agree_on_their_defaults() -> None:
    """[trace] (config), ProbeSpec (probers) and TraceParams (the session) each declare the shared trace
    settings; one default each, or `nkprobe trace`, the agent and a bare session would trace differently."""
    from dataclasses import fields

    from agent.config import TraceSection
    from agent.probers.base import ProbeSpec
    from agent.trace.session import TraceParams

    spec = {f.name: f.default for f in fields(ProbeSpec)}
    params = {f.name: f.default for f in fields(TraceParams)}
    section = {f.name: f.default for f in fields(TraceSection)}
    shared = {"max_hops", "timeout_s", "near_factor", "silent_min_s", "silent_max_s", "grace_s", "retries",
              "gap_limit"}  # fmt: skip
    assert shared <= spec.keys() & params.keys() & section.keys()
    for name in shared:
        assert section[name] == spec[name] == params[name], name
