"""Is this vantage point fit to speak for the destination? Judged from what the agent already sees.

An agent whose own home link fails reports "North Korea unreachable" as loudly as a healthy one. The
fleet's alerts should not count it (ThousandEyes calls these "local problems" and leaves such agents
out of its alert counts). So the agent judges its own side of the path, from evidence it already has,
and never sends a packet for it (nothing outside destination.prefixes, README "Safety"):

1. its default route and link, as the local-network watcher reads them over netlink
   (agent.net.localnet): no route toward the targets is `no_route`, an egress link that is not up is
   `link_down`;
2. whether any target answered lately (a latency probe, or a trace that reached it): if one did, the
   path from here works, whatever else is silent;
3. the first hops of its traces: if nothing answered beyond the first hop (the home router) in every
   trace of the last while, the path dies next to us, not at the destination: `local_hops_silent`. An
   outage of the destination itself leaves the ISP's and the upstreams' routers answering, so the
   vantage stays healthy and its "unreachable" counts.

Sans-I/O: the agent reports what it saw with `now` (a monotonic clock) and the exporter asks
`verdict(now)` at scrape time; tests step the number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import Config
    from agent.model import Path

OK, NO_ROUTE, LINK_DOWN, LOCAL_HOPS_SILENT = "ok", "no_route", "link_down", "local_hops_silent"
# The bounded values of nkprobe_vantage_reason{reason}; every one is always exported.
REASONS: tuple[str, ...] = (OK, NO_ROUTE, LINK_DOWN, LOCAL_HOPS_SILENT)
# Hops that are "ours": the home router. Hop 2 (the access ISP's first router) may be silent on some
# lines, but then the next ones answer; a cut at the home router's uplink leaves only hop 1 (and its
# ICMP network unreachable) answering.
LOCAL_HOPS = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    healthy: bool
    reason: str  # one of REASONS


def deepest_answer(path: Path) -> int:
    """The highest TTL that got any answer in one trace (0: nothing answered)."""
    return max((hop.ttl for hop in path.hops if hop.replies), default=0)


def windows_for(config: Config) -> dict[str, float]:
    """How long evidence counts, from the probe intervals in use: a few latency probes (with their
    timeout) for an answer, two trace rounds for what the traces saw."""
    return {
        "answer_window_s": max(10.0, 3 * config.ping.interval_s + config.ping.timeout_s),
        "trace_window_s": 2.5 * config.trace.interval_s,
    }


class VantageHealth:
    """What the agent saw of its own side, and the verdict it gives. One writer (the event loop);
    `verdict` may run on a scrape thread: it reads attributes that are replaced whole, never changed in
    place."""

    def __init__(self, *, answer_window_s: float, trace_window_s: float) -> None:
        self.answer_window_s = answer_window_s
        self.trace_window_s = trace_window_s
        self._route: bool | None = None  # None: the watcher has not looked (yet, or cannot)
        self._link_up = True
        self._answered_at: float | None = None
        self._traces: dict[str, tuple[float, int]] = {}  # target -> (when, deepest answering TTL)

    def set_windows(self, *, answer_window_s: float, trace_window_s: float) -> None:
        """A reload's new probe intervals."""
        self.answer_window_s = answer_window_s
        self.trace_window_s = trace_window_s

    def egress(self, *, route: bool, link_up: bool) -> None:
        """The watcher's latest look at the route toward the targets."""
        self._route = route
        self._link_up = link_up

    def answered(self, now: float) -> None:
        """A target answered a latency probe."""
        self._answered_at = now

    def traced(self, target: str, path: Path, now: float) -> None:
        """One trace of `target` finished (reached or not)."""
        if path.reached:
            self._answered_at = now
        # A new dict, never changed in place: a scrape thread may be reading the old one.
        self._traces = {**self._traces, target: (now, deepest_answer(path))}

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the traces of targets a reload removed."""
        kept = set(keep)
        self._traces = {t: v for t, v in self._traces.items() if t in kept}

    def verdict(self, now: float) -> Verdict:
        """The judgement now.

        >>> v = VantageHealth(answer_window_s=10, trace_window_s=150)
        >>> v.verdict(0.0)
        Verdict(healthy=True, reason='ok')
        >>> v.egress(route=False, link_up=False); v.verdict(1.0)
        Verdict(healthy=False, reason='no_route')
        """
        if self._route is False:
            return Verdict(False, NO_ROUTE)
        if self._route and not self._link_up:
            return Verdict(False, LINK_DOWN)
        answered = self._answered_at
        if answered is not None and now - answered <= self.answer_window_s:
            return Verdict(True, OK)
        recent = [deepest for at, deepest in self._traces.values() if now - at <= self.trace_window_s]
        if recent and max(recent) <= LOCAL_HOPS:
            return Verdict(False, LOCAL_HOPS_SILENT)
        return Verdict(True, OK)
