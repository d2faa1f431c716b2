"""The cited traceroute corpus (tests/fixtures/corpus, issue 12): every case's expected tag and confidence.

Each case is one RIPE Atlas traceroute result modelled hop for hop on a published trace; its top-level
"nkprobe_case" object says where it comes from, what was kept, the tag the evidence supports and why
(tests/fixtures/corpus/README.md). The expectations come from the evidence and the sources, not from the
classifier's output: a case the classifier gets wrong fails here until the rule is fixed.
"""

from __future__ import annotations

import ipaddress
import json
from functools import cache
from pathlib import Path as FsPath
from typing import Any

import pytest

from agent.asn import AsnTable, load_table
from agent.classify import Settings, classify
from agent.config import Config
from agent.formats.atlas_in import from_ripe
from agent.model import HIGH, LOW, NONE, Classification

CORPUS = FsPath(__file__).parent.parent / "fixtures" / "corpus"
CASE_FILES = sorted(CORPUS.glob("*.json"))
# Only the corpus's own table (rows copied from a real prefix2as table, README.md there): the cases must not
# depend on what the built-in table happens to hold.
TABLE: AsnTable = load_table([CORPUS / "corpus.pfx2as"], builtin=False)
SETTINGS = Settings.from_config(Config())  # the shipped defaults: groups, borders, name suffixes, exchanges
TAGS = {"china_unicom", "transtelecom", "other", "unknown"}

# The classes issue 12 asks the corpus to cover; each case lists its own in "classes".
REQUIRED_CLASSES = {
    "cu_as4837",
    "cu_as9929",
    "cu_as10099",
    "cu_as134544",
    "ttk_direct",
    "ttk_via_rostelecom",
    "ttk_via_dtag",
    "ttk_via_ntt",
    "ttk_via_telia",
    "ttk_via_ixp",
    "mpls_icmpext",
    "mpls_private_hops",
    "private_mid_path",
    "silent_last_hops",
    "admin_prohibited",
    "satellite",
    "contradictory",
    "other_network",
}


@cache
def load_case(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text(encoding="utf-8"))
    return data


def meta(name: str) -> dict[str, Any]:
    case: dict[str, Any] = load_case(name)["nkprobe_case"]
    return case


def run(name: str) -> Classification:
    path = from_ripe(load_case(name))
    return classify(path, TABLE.lookup, SETTINGS, meta(name)["names"])


NAMES = [f.stem for f in CASE_FILES]


@pytest.mark.parametrize("name", NAMES)
def test_case_metadata_is_complete(name: str) -> None:
    m = meta(name)
    for key in ("source", "modelled_on", "reason"):
        assert isinstance(m[key], str) and len(m[key]) > 20, f"{name}: {key} missing or too short"
    assert m["expected_tag"] in TAGS
    assert m["expected_confidence"] in {HIGH, LOW, NONE}
    # `unknown` and only `unknown` comes with confidence none (README "How it tags", 5).
    assert (m["expected_tag"] == "unknown") == (m["expected_confidence"] == NONE)
    assert isinstance(m["names"], dict) and isinstance(m["classes"], list) and m["classes"]
    addresses = {r["from"] for h in load_case(name)["result"] for r in h["result"] if "from" in r}
    assert set(m["names"]) <= addresses, f"{name}: a reverse name for an address the trace does not show"


@pytest.mark.parametrize("name", NAMES)
def test_case_is_tagged_as_the_evidence_says(name: str) -> None:
    m = meta(name)
    c = run(name)
    got = (c.upstream, c.confidence)
    assert got == (m["expected_tag"], m["expected_confidence"]), (
        f"{name}: got {got}, expected {(m['expected_tag'], m['expected_confidence'])}; "
        f"reason: {m['reason']}; evidence: {list(c.evidence)}"
    )
    text = " | ".join(c.evidence)
    for needle in m.get("evidence_mentions", []):
        assert needle in text, f"{name}: the evidence does not mention {needle!r}: {text}"


def test_no_confident_wrong_tag() -> None:
    """A high-confidence tag that differs from the expected one is the worst outcome: counted on its own."""
    wrong = []
    for name in NAMES:
        c = run(name)
        if c.confidence == HIGH and c.upstream != meta(name)["expected_tag"]:
            wrong.append(f"{name}: {c.upstream} (high), expected {meta(name)['expected_tag']}")
    print(f"confident-wrong: {len(wrong)} of {len(NAMES)}", *wrong, sep="\n")
    assert wrong == []


def test_corpus_size_and_coverage() -> None:
    assert len(NAMES) >= 25
    covered = {cls for name in NAMES for cls in meta(name)["classes"]}
    assert covered >= REQUIRED_CLASSES, f"missing classes: {sorted(REQUIRED_CLASSES - covered)}"
    tags = {meta(name)["expected_tag"] for name in NAMES}
    assert tags == TAGS  # every tag value is expected somewhere
    contradictory = [n for n in NAMES if "contradictory" in meta(n)["classes"]]
    assert len(contradictory) >= 3
    # Paths toward other networks: their destinations lie outside the destination prefixes.
    dest = [ipaddress.IPv4Network(p) for p in SETTINGS.destination_prefixes]
    for name in NAMES:
        inside = any(ipaddress.IPv4Address(load_case(name)["dst_addr"]) in net for net in dest)
        assert inside != ("other_network" in meta(name)["classes"]), name


def test_every_table_row_is_a_real_row_used_by_a_case() -> None:
    """corpus.pfx2as holds only rows that some case's address falls in (no dead rows)."""
    addresses = [
        ipaddress.IPv4Address(r["from"])
        for name in NAMES
        for h in load_case(name)["result"]
        for r in h["result"]
        if "from" in r
    ]
    for line in (CORPUS / "corpus.pfx2as").read_text().splitlines():
        prefix, length, asn = line.split("\t")
        net = ipaddress.IPv4Network(f"{prefix}/{length}")
        assert asn.isdigit()
        assert any(a in net for a in addresses), f"row {line!r} is used by no case"
