"""agent.classify.Tagger: the one object that tags a path for the agent, `nkprobe trace` and `nkprobe
classify` (AS table, settings, their memos, the BGP check), with the flow-rewrite evidence folded in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path as FsPath

import pytest

from agent.asn import TableBuilder
from agent.classify import Settings, TagCaches, Tagger, classify
from agent.config import Config, loads_config
from agent.errors import InputError
from agent.formats.atlas_in import addresses_from_ripe, from_ripe

FIXTURES = FsPath(__file__).parent.parent / "fixtures" / "ripe"
TRANSIT = str(FIXTURES / "transit.pfx2as")


def ttk_path() -> dict[str, object]:
    return json.loads((FIXTURES / "ttk_mpls_handoff.json").read_text())  # type: ignore[no-any-return]


def test_tag_is_the_rule_with_the_flow_rewrite_said_in_the_evidence() -> None:
    tagger = Tagger.from_config(Config(), [TRANSIT])
    path = from_ripe(ttk_path())
    plain = tagger.tag(path)
    assert plain == classify(path, tagger.lookup, tagger.settings)  # the rule itself, nothing added
    assert plain.upstream == "transtelecom"
    rewritten = tagger.tag(dataclasses.replace(path, rewritten_replies=2, rewrite_hop=3))
    assert rewritten.upstream == plain.upstream and rewritten.evidence[:-1] == plain.evidence
    assert rewritten.evidence[-1].startswith("a middlebox before hop 3 rewrote the probes' flow identifier")


def test_a_stored_result_tags_as_its_path_does_and_its_own_asns_fill_gaps() -> None:
    tagger = Tagger.from_config(Config(), [TRANSIT])
    obj = ttk_path()
    fast = addresses_from_ripe(obj)
    args = {"names": {}, "errors": fast.errors, "target": fast.target, "rtts": fast.rtts}
    assert tagger.tag_addresses(fast.hops, **args) == tagger.tag(from_ripe(obj))  # type: ignore[arg-type]
    # A tagger whose table knows none of the addresses and that has no configured border: the result's
    # own "asn" fields are all it has.
    empty = Tagger(TableBuilder().build(), dataclasses.replace(tagger.settings, borders={}))
    assert empty.tag_addresses(fast.hops, **args).upstream == "unknown"  # type: ignore[arg-type]
    given = {a: asn for _, addrs in fast.hops for a in addrs if (asn := tagger.asn(a)) is not None}
    assert empty.tag_addresses(fast.hops, **args, given_asns=given).upstream == "transtelecom"  # type: ignore[arg-type]


def test_the_commands_tagger_reads_no_bgp_snapshot_and_the_agents_refuses_a_broken_one(
    tmp_path: FsPath,
) -> None:
    broken = tmp_path / "bgp.json"
    broken.write_text("{")
    config = loads_config(f'[bgp]\nsnapshot = ["{broken}"]\n')
    assert Tagger.from_config(config).bgp is None  # `nkprobe trace` and `classify`: as before
    with pytest.raises(InputError):
        Tagger.from_config(config, with_bgp=True)


def test_the_memos_are_bounded_and_belong_to_one_settings() -> None:
    settings = Settings.from_config(Config())
    caches = TagCaches(settings, max_kinds=2, max_names=1)
    for address in ("8.8.8.8", "10.0.0.1", "175.45.176.71"):
        assert caches.kind_of(address) == settings.kind_of(address)
        assert len(caches.kinds) <= 2
    caches.name_tokens("ae1-as4837.example.net")
    caches.name_tokens("mskn17.transtelecom.net")
    assert len(caches._tokens) == 1
    other = Settings.from_config(Config())
    path = from_ripe(ttk_path())
    with pytest.raises(ValueError, match="other settings"):
        classify(path, lambda _a: None, other, caches=caches)
