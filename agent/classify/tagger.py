"""The one tagger: the IP-to-AS table, the tagging settings, their memos and the BGP check of one config.

`Tagger.from_config(config, extra_files)` loads what tagging needs (agent.asn.configured_table: the
updated or built-in table, asn.files, then `--asn-file`s; the [bgp] snapshot when asked for) or raises
an NkprobeError, changing nothing; `tag(path, names)` applies the rule (agent.classify.rules) and says
so when a middlebox rewrote the trace's flow (agent.trace.rewrite), so a tag and its evidence read the
same in `nkprobe trace`, `nkprobe classify` and the agent's history. The agent swaps its whole Tagger
on a reload; the commands build one per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path as FilePath
from typing import TYPE_CHECKING

from agent.asn import configured_table
from agent.asn.table import AsnMatch, AsnTable
from agent.classify.rules import Lookup, classify, classify_addresses
from agent.classify.settings import Settings, TagCaches
from agent.model import Classification, Path
from agent.trace.rewrite import with_rewrite_evidence

if TYPE_CHECKING:
    from agent.bgp import BgpCheck
    from agent.config import Config


class Tagger:
    """Tags paths with one config's AS table and settings; holds its BGP cross-check for the exporter."""

    def __init__(
        self,
        table: AsnTable,
        settings: Settings,
        *,
        bgp: BgpCheck | None = None,
        asn_files: Sequence[str] = (),
    ) -> None:
        self.table = table
        self.settings = settings
        self.caches = TagCaches(settings)  # bounded; they live and go with this Tagger
        self.bgp = bgp  # the [bgp] snapshot cross-check (agent.bgp), None without one
        self.asn_files = tuple(asn_files)  # the files named by the config and the command line

    @classmethod
    def from_config(
        cls, config: Config, extra_files: Iterable[str | FilePath] = (), *, with_bgp: bool = False
    ) -> Tagger:
        """Load everything tagging needs for `config`, plus `extra_files` (`--asn-file`); with
        `with_bgp` (the agent), the [bgp] snapshot too, so a reload that cannot read it is refused as a
        whole. Raises NkprobeError."""
        extra = [str(f) for f in extra_files]
        table = configured_table(config, extra)
        bgp = None
        if with_bgp and config.bgp.snapshot:
            # The agent's only (the commands tag without it), and only with files to read: agent.bgp
            # stays unimported otherwise (issue 25).
            from agent.bgp import load_check

            dest = config.destination
            bgp = load_check(config.bgp.snapshot, dest.asn, dest.prefixes, config.upstreams)
        files = (*config.asn.files, *extra)
        return cls(table, Settings.from_config(config), bgp=bgp, asn_files=files)

    @property
    def lookup(self) -> Lookup:
        return self.table.lookup

    def asn(self, address: str) -> int | None:
        return self.table.asn(address)

    def tag(self, path: Path, names: Mapping[str, str] = {}) -> Classification:  # names: read only
        """The upstream of one traced path, with the evidence (a rewritten flow named in it)."""
        tagged = classify(path, self.table.lookup, self.settings, names, caches=self.caches)
        return with_rewrite_evidence(path, tagged)

    def tag_addresses(
        self,
        hops: Sequence[tuple[int, Sequence[str]]],
        *,
        names: Mapping[str, str],
        errors: Mapping[int, Iterable[str]],
        target: str,
        rtts: Mapping[int, float],
        given_asns: Mapping[str, int] = {},  # read only
    ) -> Classification:
        """The tag of a stored result read as addresses (agent.formats.atlas_in.addresses_from_ripe: the fast
        way, `nkprobe classify`). `given_asns`: the result's own "asn" fields, for addresses no table
        knows. (A stored result carries no flow-rewrite count: nothing to fold in.)"""
        lookup = self.table.lookup
        if given_asns:
            table_lookup = lookup

            def lookup(address: str) -> AsnMatch | None:
                found = table_lookup(address)
                if found is None and address in given_asns:
                    return AsnMatch(given_asns[address], f"{address}/32", (), "the result's own 'asn'")
                return found

        return classify_addresses(
            hops, lookup, self.settings, names, errors, target=target, rtts=rtts, caches=self.caches
        )
