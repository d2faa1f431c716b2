"""The lab's expected hop lists and AS file (agent.lab.topology, pure: no lab, no packets) tag correctly."""

from __future__ import annotations

import dataclasses

import pytest

from agent.asn import TableBuilder
from agent.asn.loaders import load_lines
from agent.classify import Settings, classify
from agent.config import Config
from agent.lab import topology
from agent.model import Hop, Path, Protocol, Reply, ReplyKind

# What the lab's own config says (agent.lab.build.agent_config): its RFC 2544 space is routed there.
ROUTED = ("198.18.0.0/15",)
SLASH24S = ["198.19.176.0/24", "198.19.177.0/24", "198.19.178.0/24", "198.19.179.0/24"]


def _lab() -> tuple[TableBuilder, Settings]:
    builder = TableBuilder()
    load_lines(builder, topology.pfx2as().splitlines(), "lab asn.pfx2as")
    settings = dataclasses.replace(
        Settings.from_config(Config()),
        destination_prefixes=("198.19.176.0/22",),
        borders={},
        routed_prefixes=ROUTED,
    )
    return builder, settings


@pytest.mark.parametrize("slash24", SLASH24S)
def test_each_lab_path_is_tagged_with_its_upstream(slash24: str) -> None:
    builder, settings = _lab()
    table = builder.build()
    for upstream in topology.upstreams_of(slash24):
        addrs = topology.expected_hops(slash24, upstream)
        hops = tuple(
            Hop(i, (Reply(a, 0.01 * i, ReplyKind.TIME_EXCEEDED, reply_ttl=64 - i),) if a else (), 1)
            for i, a in enumerate(addrs, 1)
        )
        path = Path(addrs[-1] or "", Protocol.TCP, 1, hops, True, 0.0, 1.0)
        c = classify(path, table.lookup, settings)
        assert c.upstream == upstream, (slash24, upstream, c.evidence)
        assert c.border is not None and c.as_path[-1] == 131279


def test_the_lab_passes_its_routed_space_through_its_config() -> None:
    # The classifier no longer special-cases 198.18.0.0/15: without the lab's config key it is passed over.
    from agent.config import loads_config
    from agent.lab import build, scenario

    names = {role: topology.namespace("nkp-u-", role) for role in topology.ROLES}
    info = build._lab_info("nkp-u-", names, scenario.load(), "wire", topology.CHINA)
    config = loads_config(build.agent_config(info), "lab.toml")  # what `lab up` writes
    assert config.classify.routed_prefixes == ROUTED
    assert Settings.from_config(config).routed_prefixes == ROUTED
    builder, settings = _lab()
    table = builder.build()
    slash24 = SLASH24S[0]
    upstream = topology.upstreams_of(slash24)[0]
    addrs = topology.expected_hops(slash24, upstream)
    hops = tuple(
        Hop(i, (Reply(a, 0.01 * i, ReplyKind.TIME_EXCEEDED),) if a else (), 1) for i, a in enumerate(addrs, 1)
    )
    path = Path(addrs[-1] or "", Protocol.TCP, 1, hops, True, 0.0, 1.0)
    assert classify(path, table.lookup, settings).upstream == upstream
    bare = dataclasses.replace(settings, routed_prefixes=())
    assert classify(path, table.lookup, bare).upstream == "unknown"
