"""agent.classify on traceroutes modelled on published paths (tests/fixtures/ripe)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path as FsPath

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.asn import AsnTable, load_table
from agent.classify import Settings, classify
from agent.config import Config
from agent.formats.atlas_in import from_ripe
from agent.model import Classification, Hop, Path, Protocol, Reply, ReplyKind

FIXTURES = FsPath(__file__).parent.parent / "fixtures" / "ripe"
TABLE: AsnTable = load_table([FIXTURES / "transit.pfx2as"])
SETTINGS = Settings.from_config(Config())
NAMES = {
    "217.150.55.234": "mskn17.transtelecom.net",
    "188.43.10.141": "mskn17ra-lo1.transtelecom.net",
    "188.43.225.153": "KPTC-gw.transtelecom.net",
    "129.250.7.69": "trans-telecom-0.ae-3.r20.frnkge13.de.bb.gin.ntt.net",
}
TAGS = ["china_unicom", "transtelecom", "other", "unknown"]


def load(name: str) -> Path:
    return from_ripe(json.loads((FIXTURES / f"{name}.json").read_text()))


def tag(path: Path, table: AsnTable = TABLE, names: dict[str, str] = NAMES) -> Classification:
    return classify(path, table.lookup, SETTINGS, names)


def test_ttk_path_with_mpls_hops_and_the_188_43_225_153_hand_off() -> None:
    c = tag(load("ttk_mpls_handoff"))
    assert c.upstream == "transtelecom"
    assert c.border is not None and (c.border.hop, c.border.address, c.border.asn) == (
        10,
        "188.43.225.153",
        20485,
    )
    assert c.as_path == (3320, 20485, None, 131279)  # the 10.99.99.x MPLS hops are absorbed into AS20485
    text = " | ".join(c.evidence)
    assert "hop 10 188.43.225.153 is AS20485 (transtelecom), name KPTC-gw.transtelecom.net" in text
    assert "hop 14 175.45.177.10 is in 175.45.176.0/22, AS131279" in text
    assert "hop 9 217.150.44.18 is AS20485" in text  # the neighbour as context


def test_china_path_through_219_158_and_unannounced_103_35_255_254() -> None:
    c = tag(load("china_unicom_unannounced_border"))
    assert c.upstream == "china_unicom"
    assert c.border is not None and (c.border.hop, c.border.address, c.border.asn) == (
        9,
        "103.35.255.254",
        None,
    )
    assert c.as_path == (12271, 7843, 4837, None, 131279)
    assert any("configured china_unicom border" in e for e in c.evidence)


def test_unannounced_border_without_config_is_tagged_only_with_an_agreeing_neighbour() -> None:
    path = load("china_unicom_unannounced_border")
    bare = dataclasses.replace(SETTINGS, borders={})
    c = classify(path, TABLE.lookup, bare, {})
    # hop 8 219.158.70.18 (unannounced router space) is also unknown to the table: no neighbour with an AS
    assert c.upstream == "unknown"
    assert any("no name, border or neighbour" in e for e in c.evidence)
    # Make hop 8 silent: the neighbour of 103.35.255.254 is now hop 7, AS4837.
    hops = tuple(Hop(h.ttl, (), 3) if h.ttl == 8 else h for h in path.hops)
    c = classify(dataclasses.replace(path, hops=hops), TABLE.lookup, bare, {})
    assert c.upstream == "china_unicom"
    assert any("hop 7 219.158.3.141 before it is AS4837" in e for e in c.evidence)
    # ... and a name with a configured suffix pointing elsewhere makes the evidence disagree.
    c = classify(dataclasses.replace(path, hops=hops), TABLE.lookup, bare, {"103.35.255.254": "x.zsttk.ru"})
    assert c.upstream == "unknown" and any("disagrees" in e for e in c.evidence)


def test_udp_trace_ending_in_admin_prohibited_at_china_unicom() -> None:
    c = tag(load("udp_admin_prohibited_at_china_unicom"))
    assert c.upstream == "china_unicom"
    assert c.border is not None and c.border.address == "219.158.39.42"
    assert any("!X" in e for e in c.evidence)
    assert any("never entered the destination" in e for e in c.evidence)


def test_upstream_router_answering_from_an_exchange_lan_is_passed_over() -> None:
    c = tag(load("exchange_point_hop"))
    assert c.upstream == "china_unicom"
    assert c.border is not None and c.border.address == "219.158.19.58"
    assert any("HKIX" in e and "passed over" in e for e in c.evidence)


def test_peer_interface_named_after_ttk_is_not_ttk() -> None:
    path = load("ntt_interface_named_after_ttk")
    c = tag(path)
    assert c.upstream == "transtelecom" and c.border is not None and c.border.address == "188.43.225.153"
    assert c.as_path == (12271, 2914, 20485, None, 131279)
    # The trace ends at NTT's TTK-facing interface: not transtelecom, since AS2914 outranks the name.
    cut = dataclasses.replace(path, hops=path.hops[:5], reached=False)
    c = tag(cut)
    assert c.upstream == "unknown"
    assert any("AS2914" in e and "trans-telecom-0" in e for e in c.evidence)
    # NTT's TTK-facing interface right before the destination: AS2914 says `other`, the name says it
    # faces TTK (whose router may answer from NTT's interconnect space): contradiction, so unknown.
    direct = dataclasses.replace(path, hops=(*path.hops[:5], path.hops[-1]))
    c = tag(direct)
    assert c.upstream == "unknown" and c.confidence == "none"
    assert any("disagree" in e and "other" in e and "transtelecom" in e for e in c.evidence)
    # With TTK's routers silent, the NTT hop is the nearest: its name contradicts `other` again.
    silent = tuple(Hop(h.ttl, (), 3) if h.ttl in (6, 7) else h for h in path.hops)
    c = tag(dataclasses.replace(path, hops=silent))
    assert c.upstream == "unknown" and any("disagree" in e for e in c.evidence)
    # ... and without the name, too many hops are unseen to claim `other`.
    c = tag(dataclasses.replace(path, hops=silent), names={})
    assert c.upstream == "unknown" and any("could hide" in e for e in c.evidence)
    # No table knows NTT's address: a name that merely mentions TTK is no evidence at all.
    c = tag(cut, table=load_table([]))
    assert c.upstream == "unknown"


def test_name_suffix_counts_only_as_a_whole_suffix() -> None:
    assert SETTINGS.suffix_group("mskn17.transtelecom.net.") == ("transtelecom", "transtelecom.net")
    assert SETTINGS.suffix_group("KPTC-gw.TRANSTELECOM.NET") == ("transtelecom", "transtelecom.net")
    assert SETTINGS.suffix_group("trans-telecom-0.ae-3.r20.frnkge13.de.bb.gin.ntt.net") is None
    assert SETTINGS.suffix_group("faketranstelecom.net") is None


def test_trace_dying_in_own_isp_is_unknown_with_reason() -> None:
    c = tag(load("dies_in_own_isp"))
    assert c.upstream == "unknown" and c.border is None
    assert any("belongs to no upstream group" in e for e in c.evidence)


def test_three_silent_hops_inside_the_destination() -> None:
    c = tag(load("silent_hops_inside_destination"))
    assert c.upstream == "transtelecom"
    assert c.border is not None and c.border.hop == 5
    assert c.as_path == (3320, 20485, 131279)


def test_rfc2544_space_counts_only_where_the_config_routes_it(tmp_path: FsPath) -> None:
    f = tmp_path / "lab.pfx2as"
    f.write_text("198.18.1.0\t24\t4837\n198.18.2.0\t24\t20485\n198.19.176.0\t22\t131279\n")
    table = load_table([f], builtin=False)
    s = dataclasses.replace(
        SETTINGS, destination_prefixes=("198.19.176.0/22",), borders={}, routed_prefixes=("198.18.0.0/15",)
    )
    path = Path(
        "198.19.176.10",
        Protocol.ICMP,
        1,
        (_hop(1, "198.18.0.1"), _hop(2, "198.18.1.1"), _hop(3, "198.19.176.10")),
        True,
        0.0,
        1.0,
    )
    c = classify(path, table.lookup, s, {})
    assert c.upstream == "china_unicom" and c.border is not None and c.border.address == "198.18.1.1"


def _hop(ttl: int, address: str | None) -> Hop:
    if address is None:
        return Hop(ttl, (), 2)
    return Hop(ttl, (Reply(address, 0.01, ReplyKind.TIME_EXCEEDED, reply_ttl=250),), 2)


# --- properties ------------------------------------------------------------------------------------

PUBLIC = {
    "cu": ["219.158.3.141", "219.158.97.29", "103.35.255.254"],
    "ttk": ["217.150.60.105", "188.43.10.141", "188.43.225.153"],
    "isp": ["62.156.244.1", "66.108.3.157", "129.250.7.69"],
    "unk": ["219.158.70.18", "203.0.113.9"],
}
PRIVATE = ["10.99.99.5", "192.168.1.1", "100.64.0.1", "172.16.5.5", "169.254.1.1", "80.81.194.10"]
DEST = ["175.45.177.10", "175.45.176.71"]

hop_addr = st.one_of(
    st.none(),
    st.sampled_from(PRIVATE),
    *(st.sampled_from(v) for v in PUBLIC.values()),
    st.sampled_from(DEST),
)


def _path(addrs: list[str | None]) -> Path:
    return Path(
        "175.45.177.10", Protocol.ICMP, 1, tuple(_hop(i + 1, a) for i, a in enumerate(addrs)), False, 0.0, 1.0
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(hop_addr, min_size=1, max_size=16), st.data())
def test_private_or_silent_hops_never_swap_one_upstream_for_another(
    addrs: list[str | None], data: st.DataObject
) -> None:
    before = tag(_path(addrs)).upstream
    extra = data.draw(
        st.lists(
            st.tuples(st.integers(0, len(addrs)), st.one_of(st.none(), st.sampled_from(PRIVATE))), max_size=4
        )
    )
    mutated = list(addrs)
    for index, value in sorted(extra, key=lambda x: x[0], reverse=True):
        mutated.insert(index, value)
    after = tag(_path(mutated)).upstream
    if before in ("china_unicom", "transtelecom"):
        assert after in (before, "unknown")
    if after in ("china_unicom", "transtelecom"):
        assert before in (after, "unknown")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.sampled_from(PRIVATE),
            st.sampled_from(PUBLIC["isp"] + PUBLIC["unk"]),
            st.sampled_from(DEST),
        ),
        max_size=16,
    )
)
def test_a_path_without_upstream_evidence_is_never_tagged_with_an_upstream(addrs: list[str | None]) -> None:
    c = classify(_path(addrs), TABLE.lookup, SETTINGS, {})
    assert c.upstream in ("other", "unknown")
    if c.upstream == "unknown":
        assert c.evidence  # every unknown says why


@settings(max_examples=200, deadline=None)
@given(st.lists(hop_addr, max_size=16))
def test_every_unknown_carries_a_reason(addrs: list[str | None]) -> None:
    c = tag(_path(addrs))
    assert c.upstream in TAGS
    if c.upstream == "unknown":
        assert c.evidence and all(e for e in c.evidence)
    else:
        assert c.border is not None


def test_the_same_router_at_an_earlier_ttl_is_not_its_own_neighbour() -> None:
    # 219.158.39.42 answers at hop 19 and again (with !X) at hop 22 (tests/fixtures/corpus): the hop before
    # it is the next earlier *other* router, hop 13's 219.158.102.214, not itself counted twice.
    corpus = FIXTURES.parent / "corpus"
    path = from_ripe(json.loads((corpus / "cu_udp_admin_prohibited_2019.json").read_text()))
    c = tag(path, load_table([corpus / "corpus.pfx2as"]), {})
    assert c.upstream == "china_unicom" and c.confidence == "low"
    assert "hop 13 219.158.102.214 before it is china_unicom's too" in c.evidence[0]
    assert "hop 19 219.158.39.42 before it" not in " ".join(c.evidence)


def test_a_trace_aimed_outside_the_destination_is_never_tagged() -> None:
    # The TTK path, re-aimed at an address outside 175.45.176.0/22 and cut before North Korea: its last
    # public hop is TTK's, but a path to another network says nothing of North Korea's upstream.
    path = load("ttk_mpls_handoff")
    cut = dataclasses.replace(path, target="217.150.60.105", hops=path.hops[:9], reached=False)
    c = tag(cut)
    assert (c.upstream, c.confidence, c.border) == ("unknown", "none", None)
    assert c.evidence == (
        "the trace's target 217.150.60.105 is outside the destination (175.45.176.0/22); only paths toward"
        " the destination are tagged",
    )
    assert tag(dataclasses.replace(cut, target="175.45.177.10")).upstream == "transtelecom"  # aimed at NK


def _delayed_after_border(path: Path, border_hop: int, extra_s: float) -> Path:
    """`path` with every reply after hop `border_hop` `extra_s` later: a long link at the border."""
    hops = tuple(
        h if h.ttl <= border_hop else dataclasses.replace(
            h, replies=tuple(r._replace(rtt_s=r.rtt_s + extra_s) for r in h.replies)
        )
        for h in path.hops
    )  # fmt: skip
    return dataclasses.replace(path, hops=hops)


def test_a_satellite_sized_rtt_step_at_the_border_lowers_a_terrestrial_tag() -> None:
    from agent.classify import classify_addresses
    from agent.formats.atlas_in import addresses_from_ripe
    from agent.formats.atlas_out import to_ripe

    path = load("ttk_mpls_handoff")
    assert tag(path).confidence == "high"
    far = _delayed_after_border(path, 10, 0.48)  # one geostationary hop: ~477 ms a round trip
    c = tag(far)
    assert (c.upstream, c.confidence) == ("transtelecom", "low")
    assert any(
        e.startswith("the RTT rises ")
        and "from hop 10 to hop 14: the delay of a geostationary satellite hop" in e
        for e in c.evidence
    ), c.evidence
    # The fast reader of stored results sees the same step and gives the same answer.
    fast = addresses_from_ripe(to_ripe(far))
    assert (
        classify_addresses(
            fast.hops, TABLE.lookup, SETTINGS, NAMES, fast.errors, target=fast.target, rtts=fast.rtts
        )
        == c
    )
    # A long terrestrial link (Moscow to Pyongyang over TTK's fibre is about 100-150 ms) changes nothing.
    assert tag(_delayed_after_border(path, 10, 0.2)).confidence == "high"
