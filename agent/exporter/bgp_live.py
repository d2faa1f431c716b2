"""The live BGP view's metrics (agent.bgp.feed.LiveStatus, read at scrape time: DESIGN idea 8).

Bounded labels only: `prefix` (a /24 of destination.prefixes), `upstream` (the tag values), `state`
(the three RPKI states), `outcome`, `result`. Every label set is present from the first scrape, at NaN
or 0 until the view knows; with the live view off, only nkprobe_bgp_live 0 is exported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

from agent.exporter.families import CounterFamily, GaugeFamily, MetricFamily

if TYPE_CHECKING:
    from agent.bgp.feed import LiveStatus


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def live_metrics(live: LiveStatus | None) -> Iterator[MetricFamily]:
    on = GaugeFamily("nkprobe_bgp_live", "1 if the live BGP view ([bgp] live) is on.")
    on.add_metric([], 0.0 if live is None else 1.0)
    yield on
    if live is None:
        return
    # Here, not at the top: with the live view off (the default), agent.bgp stays unimported.
    from agent.bgp.feed import REFRESH_RESULTS
    from agent.bgp.live import OUTCOMES, RPKI_STATES

    ratio = GaugeFamily(
        "nkprobe_bgp_upstream_ratio",
        "Share of the RIS peers with a route to the /24 whose path enters the destination AS from each "
        "upstream group (unknown: another origin, or nothing before it).",
        labels=["prefix", "upstream"],
    )
    visibility = GaugeFamily(
        "nkprobe_bgp_visibility_ratio",
        "Share of RIS full-table peers seeing the /24 (RIPEstat routing-status at refresh, moved by the "
        "live updates since).",
        labels=["prefix"],
    )
    rpki = GaugeFamily(
        "nkprobe_bgp_rpki_state",
        "1 for the /24's RPKI state with the destination AS as origin (RIPEstat rpki-validation), else 0.",
        labels=["prefix", "state"],
    )
    changed = GaugeFamily(
        "nkprobe_bgp_last_change_timestamp_seconds",
        "When the /24's set of BGP upstreams last changed, or it was withdrawn or announced again.",
        labels=["prefix"],
    )
    peers = GaugeFamily("nkprobe_bgp_peers", "RIS peers with a route covering the /24.", labels=["prefix"])
    for p in live.prefixes:
        for tag in live.labels:
            ratio.add_metric([p.prefix, tag], p.shares.get(tag, 0.0) if p.peers else math.nan)
        visibility.add_metric([p.prefix], _nan(p.visibility))
        for state in RPKI_STATES:
            rpki.add_metric([p.prefix, state], math.nan if p.rpki is None else float(p.rpki == state))
        changed.add_metric([p.prefix], _nan(p.last_change))
        peers.add_metric([p.prefix], float(p.peers))
    yield from (ratio, visibility, rpki, changed, peers)
    up = GaugeFamily("nkprobe_bgp_stream_up", "1 while the RIS Live stream is connected and subscribed.")
    up.add_metric([], 1.0 if live.stream_up else 0.0)
    yield up
    stale = GaugeFamily(
        "nkprobe_bgp_stale",
        "1 while the view may be out of date: the stream is down or the last RIPEstat refresh failed.",
    )
    stale.add_metric([], 1.0 if live.stale else 0.0)
    yield stale
    messages = CounterFamily(
        "nkprobe_bgp_messages",
        "RIS Live messages by outcome (applied, ignored, outside the destination, malformed, error).",
        labels=["outcome"],
    )
    for outcome in OUTCOMES:
        messages.add_metric([outcome], float(live.messages.get(outcome, 0)))
    yield messages
    refreshes = CounterFamily(
        "nkprobe_bgp_refreshes", "RIPEstat refreshes of the view by result.", labels=["result"]
    )
    for result in REFRESH_RESULTS:
        refreshes.add_metric([result], float(live.refreshes.get(result, 0)))
    yield refreshes
    state_time = GaugeFamily(
        "nkprobe_bgp_state_timestamp_seconds", "When the last good RIPEstat state was applied (0: never)."
    )
    state_time.add_metric([], live.state_time or 0.0)
    yield state_time
