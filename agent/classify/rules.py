"""Pure: a traced path -> the upstream it crossed into the destination, with evidence a person can check.

The rule (README "How it tags" gives the source of each):
1. Find the first hop inside the destination (its AS is destination.asn, or it is in destination.prefixes).
2. The upstream is the group of the nearest public, responding hop before it. Private (RFC 1918), shared
   (RFC 6598), loopback, link-local and exchange-point addresses are passed over: MPLS tunnels answer from
   RFC 1918 space (TTK's 10.99.99.x) and a router at an exchange answers from the exchange's LAN.
   A test bed numbered in such space (the lab: 198.18.0.0/15) says so in `[classify] routed_prefixes`.
3. That hop's group comes from its AS (longest-prefix match) when any table knows the address. The AS
   outranks the reverse name: NTT's `trans-telecom-0...gin.ntt.net` is AS2914, not TransTeleCom. A
   configured border address outranks both (it exists for unannounced borders such as 103.35.255.254).
   An address no table knows takes its group from a configured border, a name ending in a configured
   suffix and the nearest public hop before it; if they disagree, or nothing speaks, the tag is `unknown`.
4. A trace that never enters the destination is tagged from its last responding public hop only if that
   hop belongs to an upstream group (a `!X` from China Unicom's 219.158.39.42 is China Unicom).
5. `other` needs a hop of a known AS outside every group right before the destination, with no more than
   `max_gap` silent or passed-over hops between: a long silent stretch could hide an upstream's routers.
Weak evidence gives `unknown`, and every `unknown` says why in its evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from agent.asn.table import AsnMatch
from agent.classify.settings import Settings, TagCaches
from agent.model import HIGH, LOW, NONE, OTHER, UNKNOWN, Border, Classification, Hop, Path

Lookup = Callable[[str], AsnMatch | None]

# RIPE Atlas "err" letters (agent.model.UNREACHABLE_ERR) in words, with traceroute's marks.
_ERR_TEXT = {
    "N": "network unreachable, !N",
    "H": "host unreachable, !H",
    "P": "protocol unreachable, !P",
    "F": "fragmentation needed, !F",
    "S": "source route failed, !S",
    "A": "administratively prohibited, !X",
}


class _Addr(NamedTuple):
    """What we know about one responding address of one hop (a NamedTuple: built ~10^5 times a second)."""

    ttl: int
    address: str
    kind: str  # "public", "special", "exchange", "destination", "invalid"
    match: AsnMatch | None
    name: str
    exchange: str = ""
    tokens: tuple[tuple[str, str], ...] = ()  # of its name (agent.classify.rdns.name_tokens)

    @property
    def asn(self) -> int | None:
        return None if self.match is None else self.match.asn


def _describe(settings: Settings, a: _Addr) -> str:
    text = f"hop {a.ttl} {a.address}"
    if a.match is not None:
        group = settings.group_of_asn(a.asn)
        text += f" is AS{a.asn}" + (f" ({group})" if group else "")
        if a.match.alternatives:
            text += " (also originated by " + ", ".join(f"AS{x}" for x in a.match.alternatives) + ")"
    else:
        text += " is in no IP-to-AS table"
    if a.name:
        text += f", name {a.name}"
    return text


class _Verdict(NamedTuple):
    group: str | None  # a group name, OTHER, or None (unknown)
    evidence: tuple[str, ...]
    confidence: str = LOW  # HIGH: two independent signals agree; LOW: one; NONE: no tag


def _name_signals(settings: Settings, a: _Addr) -> list[tuple[str, str]]:
    """(group, why) from the hop's reverse name: its operator's domain, then neighbour tokens.

    A configured suffix is the operator's own domain: the router is that group's. A token
    (agent.classify.rdns.NAME_TOKEN_PATTERNS, `asNNNN`) names the network across the interface: the answering
    router may be either side of that link (bdrmap, IMC 2016: interconnects are numbered from one side's
    space), so a token backs a tag of the group it names and contradicts any other one.
    """
    if not a.name:
        return []
    out: list[tuple[str, str]] = []
    named = settings.suffix_group(a.name)
    if named is not None:
        out.append((named[0], f"its name ends in {named[1]}"))
    for kind, value in a.tokens:
        group = value if kind == "group" else settings.group_of_asn(int(value))
        if group is None or group not in settings.upstreams:
            continue  # a token of no group (or of the destination) says nothing about the upstream
        if named is not None and named[0] == group:
            continue  # mskn17.transtelecom.net: the operator's own name, counted once
        text = f"AS{value}" if kind == "asn" else value
        out.append((group, f"its name has the token {text} (an interface facing {group})"))
    return out


def _group_of_hop(settings: Settings, a: _Addr, before: _Addr | None) -> _Verdict:
    """The group one public address belongs to, weighing every signal (README "How it tags").

    Signals: a configured border address; the address's AS (longest-prefix match); the reverse name
    (operator domain or neighbour token); the nearest public hop before it. The primary signal is the
    configured border, else the AS, else (an address no table knows) the agreeing votes of the name's
    operator domain and the hop before. Any name signal naming another group, or the hop before naming
    another upstream group while only the AS speaks, is a contradiction: then the tag is unknown and
    the evidence names each signal (never a confident tag on contradiction).
    """
    described = _describe(settings, a)
    border = settings.border_group(a.address)
    names = _name_signals(settings, a)
    addr_group = (settings.group_of_asn(a.asn) or OTHER) if a.match is not None else None
    support: list[str] = []
    if border is not None:
        primary: str | None = border
        support.append(f"a configured {border} border address")
        if addr_group not in (None, border):
            support[-1] += f" (the table's AS{a.asn} disagrees; the configured border wins)"
        elif addr_group == border:
            support.append(f"AS{a.asn} is {border}'s")
    elif addr_group is not None:
        primary = addr_group
        support.append(f"AS{a.asn}" + (f" is {addr_group}'s" if addr_group != OTHER else " is in no group"))
    else:
        primary = None
    before_group: str | None = None
    before_why = ""
    if before is not None:
        bb = settings.border_group(before.address)
        if bb is not None:
            before_group, before_why = bb, "a configured border"
        elif before.match is not None:
            before_group = settings.group_of_asn(before.asn) or OTHER
            before_why = f"AS{before.asn}"
        if before_group in (None, OTHER):
            hints = _name_signals(settings, before)
            if hints:  # NTT's `trans-telecom-0...ntt.net` before a TTK hop: it faces TTK
                before_group, before_why = hints[0]
    before_text = f"hop {before.ttl} {before.address} before it" if before is not None else ""
    if primary is None:
        # No table knows it: a vote of the operator's domain in its name and one of the hop before.
        votes: dict[str, list[str]] = {}
        named = settings.suffix_group(a.name) if a.name else None
        if named is not None:
            votes.setdefault(named[0], []).append(f"its name ends in {named[1]}")
        if before is not None and before.match is not None and before_group not in (None, OTHER):
            assert before_group is not None
            votes.setdefault(before_group, []).append(f"{before_text} is AS{before.asn}")
        if not votes:
            why = f"{described}; no name, border or neighbour ties it to an upstream"
            return _Verdict(None, (why,), NONE)
        if len(votes) > 1:
            reasons = "; ".join(f"{g}: {' and '.join(why)}" for g, why in sorted(votes.items()))
            return _Verdict(None, (f"{described}; the evidence disagrees ({reasons})",), NONE)
        (primary, support), *_ = votes.items()
        support = list(support)
    assert primary is not None
    against = [(g, why) for g, why in names if g != primary]
    agree = [why for g, why in names if g == primary and why not in support]
    # The hop before is another upstream's while only this hop's AS speaks: which one hands over to the
    # destination cannot be told (the answering router may be the other side of an interconnect).
    lone = len(support) + len(agree) < 2 and border is None
    if not against and lone and before_group is not None and before_group not in (OTHER, primary):
        against.append((before_group, f"{before_text} is {before_group}'s ({before_why})"))
    if against:
        said = [f"{' and '.join(support)}: {primary}"] + [f"{why}: {g}" for g, why in against]
        return _Verdict(
            None,
            (f"{described}; the strongest signals disagree ({'; '.join(said)}), so no tag is given",),
            NONE,
        )
    support += agree
    if before_group == primary and before is not None:
        support.append(f"{before_text} is {primary}'s too ({before_why})")
    confidence = HIGH if len(support) >= 2 else LOW
    return _Verdict(primary, (f"{described}; {'; '.join(support)}",), confidence)


def _as_path(per_hop: list[int | None]) -> tuple[int | None, ...]:
    """Per-hop ASNs (the first known of each hop) collapsed: runs merged, unknown stretches between the
    same AS absorbed.

    Leading unknown hops (the vantage's own LAN) are dropped; other unknown stretches stay as None.

    >>> _as_path([None, 3320, 3320, None, 3320, None, 4837, 4837, None, 131279])
    (3320, None, 4837, None, 131279)
    """
    collapsed: list[int | None] = []
    for asn in per_hop:
        if collapsed and collapsed[-1] == asn:
            continue
        collapsed.append(asn)
    # Absorb None between two equal ASes (MPLS or silent hops inside one network).
    out: list[int | None] = []
    for i, asn in enumerate(collapsed):
        if asn is None and 0 < i < len(collapsed) - 1 and collapsed[i - 1] == collapsed[i + 1]:
            continue
        if out and out[-1] == asn:
            continue
        out.append(asn)
    while out and out[0] is None:
        out.pop(0)
    return tuple(out)


class _Rows:
    """The addresses of every hop, with what the classifier asks of them again and again precomputed.

    The `_Addr` of a hop (with its name) is built on first use: the rule looks at a handful of hops.
    """

    __slots__ = ("_addrs", "_caches", "_entries", "_hops", "_names", "asns", "public")

    def __init__(
        self,
        hops: Sequence[tuple[int, Sequence[str]]],
        entries: list[list[tuple[str, str, AsnMatch | None, str]]],
        public: list[bool],
        asns: list[int | None],
        *,
        names: Mapping[str, str],
        caches: TagCaches,
    ) -> None:
        self._hops = hops
        self._entries = entries  # per hop: (address, kind, match, exchange label) of each address
        self.public = public  # the hop has a public address
        self.asns = asns  # the first known AS of the hop
        self._names = names
        self._caches = caches
        self._addrs: dict[int, list[_Addr]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def has(self, index: int, kind: str) -> bool:
        """Hop `index` has an address of this kind (without building its _Addr list)."""
        return any(entry[1] == kind for entry in self._entries[index])

    def addrs(self, index: int) -> list[_Addr]:
        found = self._addrs.get(index)
        if found is None:
            ttl = self._hops[index][0]
            names, tokens = self._names, self._caches.name_tokens
            found = []
            for address, kind, match, ixp in self._entries[index]:
                name = names.get(address, "")
                found.append(_Addr(ttl, address, kind, match, name, ixp, tokens(name) if name else ()))
            self._addrs[index] = found
        return found


def _nearest_public(rows: _Rows, end: int) -> int | None:
    """Index of the nearest hop before `end` with a public address."""
    public = rows.public
    for i in range(end - 1, -1, -1):
        if public[i]:
            return i
    return None


def _hop_verdict(settings: Settings, rows: _Rows, index: int) -> tuple[_Verdict, _Addr]:
    """The verdict for hop `index` (its public addresses must agree) and the address used as the border."""
    publics = [a for a in rows.addrs(index) if a.kind == "public"]
    own = {a.address for a in publics}
    before_index = _nearest_public(rows, index)
    # The same address at an earlier TTL (a router that answers twice, as 219.158.39.42 does on a path
    # whose probes loop or are rate limited) is this router again, not a second, agreeing signal.
    while before_index is not None and any(
        a.address in own for a in rows.addrs(before_index) if a.kind == "public"
    ):
        before_index = _nearest_public(rows, before_index)
    before = None
    if before_index is not None:
        before = next(a for a in rows.addrs(before_index) if a.kind == "public")
    verdicts = [_group_of_hop(settings, a, before) for a in publics]
    if len(verdicts) == 1:
        return verdicts[0], publics[0]  # the usual hop: one address
    groups = {v.group for v in verdicts}
    evidence = tuple(e for v in verdicts for e in v.evidence)
    if len(groups) > 1:
        names = ", ".join(sorted(str(g) for g in groups))
        return _Verdict(
            None, (*evidence, f"hop {publics[0].ttl} answered from several networks ({names})"), NONE
        ), (publics[0])
    confidence = HIGH if all(v.confidence == HIGH for v in verdicts) else LOW
    return _Verdict(verdicts[0].group, evidence, confidence), publics[0]


def _addresses(hop: Hop) -> tuple[str, ...] | list[str]:
    """Distinct responding addresses in order (Hop.addresses, without its cost for the usual one)."""
    replies = hop.replies
    if not replies:
        return ()
    first = replies[0].address
    if all(r.address == first for r in replies):
        return (first,)
    return hop.addresses


def classify(
    path: Path,
    lookup: Lookup,
    settings: Settings,
    names: Mapping[str, str] = {},  # read only
    *,
    caches: TagCaches | None = None,
) -> Classification:
    """Tag one path; see the module docstring for the rule. `caches`: the memos of `settings` to use
    (agent.classify.tagger.Tagger keeps one; without, a fresh one for this path)."""
    hops = path.hops

    def errors_at(index: int) -> set[str]:
        return {r.err for r in hops[index].replies if r.err is not None}

    rows = [(h.ttl, _addresses(h)) for h in hops]
    rtts = {i: min(r.rtt_s for r in h.replies) for i, h in enumerate(hops) if h.replies}
    return _classify(rows, errors_at, lookup, settings, names, target=path.target, rtts=rtts, caches=caches)


def classify_addresses(
    hops: Sequence[tuple[int, Sequence[str]]],
    lookup: Lookup,
    settings: Settings,
    names: Mapping[str, str] = {},  # read only
    errors: Mapping[int, Iterable[str]] = {},  # read only
    *,
    target: str = "",
    rtts: Mapping[int, float] = {},  # read only
    caches: TagCaches | None = None,
) -> Classification:
    """`classify` from what it reads of a path: per hop its number and distinct responding addresses, the
    RIPE "err" letters and the smallest RTT (seconds) by hop index, and the trace's target
    (agent.formats.atlas_in.addresses_from_ripe gives them without building the replies: the fast way to
    tag stored results)."""
    return _classify(
        hops, lambda index: set(errors.get(index, ())), lookup, settings, names, target=target, rtts=rtts,
        caches=caches,
    )  # fmt: skip


def _rows(
    hops: Sequence[tuple[int, Sequence[str]]], lookup: Lookup, caches: TagCaches, names: Mapping[str, str]
) -> tuple[_Rows, int | None]:
    """Every responding address classified, and the index of the first hop inside the destination.

    One pass with local names: this loop runs for every address of every path (about 15 per trace).
    """
    kinds = caches.kinds  # kind_of's memo, read here without the call
    kind_of = caches.kind_of
    dest_asn = caches.settings.destination_asn
    entries: list[list[tuple[str, str, AsnMatch | None, str]]] = []
    public: list[bool] = []
    asns: list[int | None] = []
    dest_index: int | None = None
    for _ttl, addresses in hops:
        if not addresses:  # a silent hop
            entries.append([])
            public.append(False)
            asns.append(None)
            continue
        row: list[tuple[str, str, AsnMatch | None, str]] = []
        is_public = False
        hop_asn: int | None = None
        for address in addresses:
            kind, ixp = kinds.get(address) or kind_of(address)
            if kind in {"invalid", "special"}:
                row.append((address, kind, None, ""))
                continue
            match = lookup(address)
            if match is not None:
                if hop_asn is None:
                    hop_asn = match.asn
                if match.asn == dest_asn:
                    kind = "destination"
            if kind == "public":
                is_public = True
            elif kind == "destination" and dest_index is None:
                dest_index = len(entries)
            row.append((address, kind, match, ixp))
        entries.append(row)
        public.append(is_public)
        asns.append(hop_asn)
    return _Rows(hops, entries, public, asns, names=names, caches=caches), dest_index


def _classify(
    hops: Sequence[tuple[int, Sequence[str]]],
    errors_at: Callable[[int], set[str]],
    lookup: Lookup,
    settings: Settings,
    names: Mapping[str, str],
    *,
    target: str,
    rtts: Mapping[int, float],
    caches: TagCaches | None,
) -> Classification:
    if caches is None:
        caches = TagCaches(settings)
    elif caches.settings is not settings:
        raise ValueError("caches of other settings: a memo must not outlive its Settings")
    rows, dest_index = _rows(hops, lookup, caches, names)
    as_path = _as_path(rows.asns)

    def unknown(*why: str) -> Classification:
        return Classification(UNKNOWN, None, as_path, why, NONE)

    if dest_index is None:
        if target and not _aimed_at_destination(settings, lookup, target):
            # The tags say which way a path crossed into the destination; a trace aimed elsewhere (a
            # RIPE Atlas measurement of another network, say) crosses into none, whichever upstream's
            # routers it passes: tagging it from its last hop would count it as a path to North Korea.
            where = ", ".join(settings.destination_prefixes)
            return unknown(
                f"the trace's target {target} is outside the destination ({where}); only paths toward the"
                " destination are tagged"
            )
        return _classify_unreached(settings, rows, errors_at, as_path)
    first = next(a for a in rows.addrs(dest_index) if a.kind == "destination")
    inside = f"hop {first.ttl} {first.address} is in " + (
        f"{first.match.prefix}, AS{first.match.asn}"
        if first.match is not None
        else "the destination prefixes"
    )
    up_index = _nearest_public(rows, dest_index)
    if up_index is None:
        return unknown(inside, "no public hop answered before the destination; the upstream is not seen")
    gap = dest_index - up_index - 1
    verdict, border_addr = _hop_verdict(settings, rows, up_index)
    evidence = list(verdict.evidence)
    context = _context(settings, rows, up_index) if verdict.group is not None else []
    evidence.extend(context)
    passed = [
        a
        for i in range(up_index + 1, dest_index)
        if rows.has(i, "exchange")
        for a in rows.addrs(i)
        if a.kind == "exchange"
    ]
    evidence.extend(
        f"hop {a.ttl} {a.address} is on an exchange LAN ({a.exchange}), passed over" for a in passed
    )
    if gap:
        evidence.append(f"{gap} silent or passed-over hop{'s' if gap > 1 else ''} before hop {first.ttl}")
    evidence.append(inside)
    if verdict.group is None:
        return unknown(*evidence)
    limit = settings.other_max_gap if verdict.group == OTHER else settings.max_gap
    if gap > limit:
        evidence.append(
            f"{gap} hops before the destination are unseen (more than {limit}): an upstream could hide there"
        )
        return unknown(*evidence)
    border = Border(hop=border_addr.ttl, address=border_addr.address, asn=border_addr.asn)
    confidence = verdict.confidence
    step = _satellite_step(rtts, up_index, dest_index) if verdict.group != OTHER else None
    if step is not None:
        evidence.append(
            f"the RTT rises {step * 1000:.0f} ms from hop {border_addr.ttl} to hop {first.ttl}: the delay of"
            f" a geostationary satellite hop, not of {verdict.group}'s terrestrial hand-off; confidence low"
        )
        confidence = LOW
    elif confidence != HIGH:
        evidence.append("confidence low: one signal only; an agreeing name or neighbour hop would confirm it")
    return Classification(verdict.group, border, as_path, tuple(evidence), confidence)


# A geostationary satellite sits 35,786 km up: one hop through it is 71,572 km each way, 477 ms a round
# trip at the speed of light (more in practice: ~550-650 ms over a VSAT link). No fibre hand-off between
# two neighbouring routers adds that much, so such a step at the border contradicts a terrestrial
# upstream (North Korea's 2012-2013 Intelsat path, AS22351, was tagged by its own AS, `other`).
SATELLITE_STEP_S = 0.45


def _satellite_step(rtts: Mapping[int, float], up_index: int, dest_index: int) -> float | None:
    """The RTT step from the upstream hop to the destination's first hop, if a satellite hop's size."""
    up, dest = rtts.get(up_index), rtts.get(dest_index)
    if up is None or dest is None or dest - up < SATELLITE_STEP_S:
        return None
    return dest - up


def _aimed_at_destination(settings: Settings, lookup: Lookup, target: str) -> bool:
    """The target is in the destination prefixes or the destination AS (an address that is not an IPv4
    address, such as a hostname left in "dst_addr", is given the benefit of the doubt)."""
    kind, _ = settings.kind_of(target)
    if kind in {"destination", "invalid"}:
        return True
    match = lookup(target)
    return match is not None and match.asn == settings.destination_asn


def _context(settings: Settings, rows: _Rows, index: int) -> list[str]:
    """The nearest hop before the border hop with a known AS, as context a reader can check."""
    before = _nearest_public(rows, index)
    while before is not None:
        a = next(x for x in rows.addrs(before) if x.kind == "public")
        if a.match is not None:
            return [f"before it, {_describe(settings, a)}"]
        before = _nearest_public(rows, before)
    return []


def _classify_unreached(
    settings: Settings,
    rows: _Rows,
    errors_at: Callable[[int], set[str]],
    as_path: tuple[int | None, ...],
) -> Classification:
    where = f"the trace never entered the destination ({', '.join(settings.destination_prefixes)})"
    last = _nearest_public(rows, len(rows))
    if last is None:
        return Classification(UNKNOWN, None, as_path, (f"{where}; no public hop answered",), NONE)
    verdict, border_addr = _hop_verdict(settings, rows, last)
    evidence = list(verdict.evidence)
    errors = sorted(errors_at(last))
    if errors:
        text = ", ".join(f"'{e}' ({_ERR_TEXT.get(e, 'code ' + e)})" for e in errors)
        evidence.append(f"hop {border_addr.ttl} answered ICMP destination unreachable {text}")
    if verdict.group is None or verdict.group == OTHER:
        evidence.append(f"{where}; its last public hop belongs to no upstream group")
        return Classification(UNKNOWN, None, as_path, tuple(evidence), NONE)
    evidence.append(f"{where}; it stops in {verdict.group} and nothing after it disagrees")
    evidence.append("confidence low: the trace never reached the destination")
    border = Border(hop=border_addr.ttl, address=border_addr.address, asn=border_addr.asn)
    return Classification(verdict.group, border, as_path, tuple(evidence), LOW)
