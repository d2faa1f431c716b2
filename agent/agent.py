"""The agent: one object that owns what a round needs and the one way to change it, `Agent.reload`.

`Agent(config)` holds the config in use, the results (`agent.results.Results`), the tagger
(`agent.classify.Tagger`: AS table, settings, BGP cross-check), every target's tracked state
(`agent.tracking.TrackedTargets`), and once running the probe engine (sockets and the packet budget), the
history writer and the scheduler. The scheduler times the probes and rounds (agent.scheduler); what they
do is here:

- `probe(target, protocol, done)`: one latency probe (`start_ping`, agent.probers.Pinger: a callback,
  not a task), into the results; its latency watch may ask for a trace of the /24 now.
- `round(target)`: `trace.flows` Paris traces (`trace`), each tagged (`tagger.tag`) and recorded; the
  round steps the target's tracked state (agent.tracking), its values go to the results, and a confirmed
  change to the history writer (`record_change`: queued at once, written on the writer's thread; the
  exporter reads the writer's health from it at scrape time).

`reload(config)` applies a whole new config or keeps the old one: everything that can fail on bad input
(the allowlist check of the targets, the AS tables, the BGP snapshot) is done first, off to the side;
only then is each part switched over, the engine's allowlist before the scheduler's targets. What takes
a restart (agent.listen, agent.netns, agent.state_dir) is kept and logged.

`nkprobe run` (agent.commands.run) parses its flags, serves the metrics and starts `Agent.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
from asyncio import FIRST_COMPLETED
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agent import __version__
from agent.classify import Tagger
from agent.config import Config, TargetConfig, load_config
from agent.errors import NkprobeError, RateLog
from agent.history import HistoryWriter, PathChange, hops_from_path
from agent.model import Classification, Path, PingResult, Protocol, Trigger
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.engine import ProbeEngine, open_engine
from agent.net.localnet import LocalNetWatcher
from agent.probers import PingDone, Pinger, trace
from agent.probers.base import trace_spec
from agent.results import Results
from agent.scheduler import ProbeDone, Scheduler
from agent.tracking import ConfirmedChange, TrackedTargets, tag_values
from agent.vantage import VantageHealth, windows_for

if TYPE_CHECKING:  # the live BGP view is imported only when it is on (README "Live BGP")
    from agent.bgp.feed import LiveFeed, LiveStatus
    from agent.bgp.live import Change

log = logging.getLogger("nkprobe.run")

# A `stop` set from another thread (not through a signal, which wakes the loop at once) is seen within this.
# With the signals handled (`nkprobe run`), the loop's own handler is the only one that sets it, and no
# poll is needed: an idle wake-up costs 0.6-1 ms of CPU on the test machine (issue 25).
STOP_POLL_S = 5.0
RESTART_ONLY = ("listen", "netns", "state_dir")  # [agent] keys a reload cannot apply


def results_settings(config: Config) -> dict[str, Any]:
    """What the results take from the config, at start-up and on every reload alike."""
    return {
        "agent_name": config.agent.name,
        "targets": config.targets,
        "ping_protocols": {t.address: t.ping_protocols for t in config.targets}.__getitem__,
        "trace_protocol": config.trace.protocol,
        "traced": config.trace.enabled,
        "tags": tag_values(config.upstreams),
    }


def build_results(config: Config) -> Results:
    return Results(version=__version__, **results_settings(config))


def check_targets(config: Config) -> None:
    """The hard rule: every target inside destination.prefixes (agent.net.allowlist), before any socket."""
    allow = Allowlist(config.destination.prefixes)
    for t in config.targets:
        allow.check(t.address)


def load_tagger(config: Config) -> Tagger:
    """The agent's tagger for `config`: its AS tables and [bgp] snapshot (raises NkprobeError)."""
    return Tagger.from_config(config, with_bgp=True)


class Agent:
    """The agent of one process: its config, results, tagger and, while `run` runs, its engine,
    history writer and scheduler. `wall` is the clock of the history's timestamps; `tagger_for` loads
    the tagger of a config (at start and on every reload)."""

    def __init__(
        self,
        config: Config,
        *,
        results: Results | None = None,
        tagger_for: Callable[[Config], Tagger] = load_tagger,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_targets(config)
        self._config = config
        self.results = results if results is not None else build_results(config)
        self._tagger_for = tagger_for
        self.tagger = tagger_for(config)
        self._show_asn_info()
        self.tracking = TrackedTargets(config)
        self._wall = wall
        self._monotonic = monotonic
        # The agent's judgement of its own vantage point (agent.vantage), fed below and by the
        # local-network watcher, read by the exporter at scrape time.
        self.vantage = VantageHealth(**windows_for(config))
        self._log = RateLog(log)
        self.engine: ProbeEngine | None = None
        self.pinger: Pinger | None = None  # the scheduled latency probes' (agent.probers._latency)
        self.scheduler: Scheduler | None = None
        self.writer: HistoryWriter | None = None
        self.bgp_feed: LiveFeed | None = None  # the live BGP view, while `run` runs with [bgp] live
        self._bgp_task: asyncio.Task[None] | None = None
        # Set by the command that owns the process (agent.commands.run), not by tests that run an
        # Agent inside theirs: `freeze_heap` is process-wide.
        self.freeze_gc = False

    @property
    def config(self) -> Config:
        return self._config

    def _show_asn_info(self) -> None:
        table = self.tagger.table
        self.results.set_asn_info(self.tagger.asn_files, len(table), table.snapshot_time)

    # -- what a round does ---------------------------------------------------------------------------

    def start_ping(self, target: TargetConfig, protocol: str, done: PingDone) -> None:
        """Send one latency probe of `target` with the [ping] settings in use; `done` gets its outcome."""
        assert self.pinger is not None, "Agent.run opens the engine"
        port = target.ping_port if protocol == "tcp" else None
        self.pinger.start(target.address, Protocol(protocol), port, self._config.ping.timeout_s, done)

    async def trace(self, target: TargetConfig, first_flow: int, flows: int) -> tuple[Path, ...]:
        """`flows` Paris traceroutes of `target` by the prober map, with the [trace] settings in use."""
        assert self.engine is not None, "Agent.run opens the engine"
        return await trace(self.engine, trace_spec(self._config, target, flows=flows, first_flow=first_flow))

    def probe(self, target: TargetConfig, protocol: str, done: ProbeDone) -> None:
        """One latency probe, recorded when it is over; `done` gets the reason to trace the target's /24
        now, if it gives one (or the exception that failed the probe)."""

        def record(result: PingResult) -> None:
            try:
                self.results.record_ping(result)
                if result.rtt_s is not None:
                    self.vantage.answered(self._monotonic())
                trigger = self.tracking.pinged(target, protocol, result)
            except Exception as exc:
                done(None, exc)
                return
            done(trigger, None)

        try:
            self.start_ping(target, protocol, record)
        except Exception as exc:
            done(None, exc)

    async def round(self, target: TargetConfig) -> None:
        """One round of traces of `target`, recorded and tagged (`tracking.pending` says whether a new
        tag awaits confirmation). A failed trace raises (the scheduler counts it) after its flows are
        counted as errors."""
        flows, results = self._config.trace.flows, self.results
        try:
            paths = await self.trace(target, 0, flows)
        except Exception:
            for _ in range(flows):
                results.record_trace_outcome(target.address, "error")
            raise
        classified: list[tuple[Path, Classification]] = []
        for path in paths:
            self.vantage.traced(target.address, path, self._monotonic())
            results.record_trace(str(path.protocol), path.duration_s)
            results.record_trace_outcome(target.address, "reached" if path.reached else "unreached")
            try:
                # No reverse names on the probing path: a PTR lookup would send hop addresses to the
                # system resolver (README "Commands", Safety); the AS table and configured borders
                # decide. A middlebox that rewrote the flow is named in the evidence (and the history).
                classified.append((path, self.tagger.tag(path)))
            except Exception as exc:
                results.count_error("classify")
                self._log.warn(f"classify {target.address}", "classifying %s failed: %s", target.address, exc)
        result = self.tracking.traced(target, classified, self._wall())
        if result is None:
            return  # removed by a reload while tracing
        st, figures = result.status, result.figures
        log.debug(
            "%s: round %s -> tag %s (candidate %s x%d)",
            target.address, ",".join(c.upstream for _, c in classified), st.tag, st.candidate, st.streak,
        )  # fmt: skip
        results.record_path(
            target.address,
            tag=st.tag,
            ratio=st.ratio,
            changes=st.changes,
            last_change_at=st.last_change_at,
            hops=figures.hops,
            reached=figures.reached,
            border_rtt={"upstream": figures.border_upstream, "destination": figures.border_destination},
            confidence=result.confidence,
            path=result.chosen[0] if result.chosen else None,
            classification=result.chosen[1] if result.chosen else None,
        )
        if result.change is not None:
            change = result.change.change
            log.info("%s (%s): upstream %s -> %s", target.address, target.prefix, change.old, change.new)
            self.record_change(result.change)

    def record_change(self, change: ConfirmedChange) -> None:
        """A confirmed upstream change, queued to the history writer (it never blocks on the disk and
        keeps its own health: agent.history.HistoryWriter.status, read by the exporter)."""
        assert self.writer is not None, "Agent.run opens the history"
        c = change.classification
        self.writer.submit(
            PathChange(
                time=change.change.at,
                agent=self._config.agent.name,
                target=change.target.address,
                prefix=change.target.prefix,
                old_tag=change.change.old,
                new_tag=change.change.new,
                as_path=c.as_path if c else (),
                hops=hops_from_path(change.path) if change.path else (),
                evidence=c.evidence if c else (),
                ratio=dict(change.ratio) or None,
                protocol=str(change.path.protocol) if change.path else "",
                border=c.border.address if c and c.border else None,
            )
        )

    # -- reload --------------------------------------------------------------------------------------

    async def reload(self, new: Config) -> bool:
        """Apply the whole of `new`, or keep the config in use if any part of it cannot be applied."""
        try:
            check_targets(new)
            tagger = self._tagger_for(new)
        except NkprobeError as exc:
            self.results.record_reload(False)
            log.error("config reload failed, keeping the running config: %s", exc)
            return False
        old, self._config = self._config, new
        for key in RESTART_ONLY:
            before, after = getattr(old.agent, key), getattr(new.agent, key)
            if before != after:
                log.warning("agent.%s changed; that takes a restart (kept %r)", key, before)
        self.tagger = tagger
        self._show_asn_info()
        if self.engine is not None:
            if new.destination.prefixes != old.destination.prefixes:
                # Before the scheduler moves to the new targets: a narrower list stops probes to what it
                # no longer covers at once, and a wider one is in place before the targets it admits are
                # probed.
                self.engine.set_allowlist(Allowlist(new.destination.prefixes))
                log.info("destination.prefixes now %s", ", ".join(new.destination.prefixes))
            if new.agent.max_pps != old.agent.max_pps:
                # In place: the sends of the last second still count against the new cap (a fresh
                # Budget would let up to old + new caps leave within one second of the reload).
                self.engine.budget.set_rate(new.agent.max_pps)
        self.results.reconfigure(**results_settings(new))
        self.tracking.configure(new)
        self.vantage.set_windows(**windows_for(new))
        self.vantage.forget(t.address for t in new.targets)
        if self.scheduler is not None:
            await self.scheduler.reconfigure(new)
            if (old.bgp, old.destination, old.upstreams) != (new.bgp, new.destination, new.upstreams):
                await self._stop_bgp()
                self._start_bgp()
        self.results.record_reload(True)
        if self.freeze_gc:
            freeze_heap()  # the new config and AS table in, the old ones (now garbage) out
        return True

    async def reload_file(self, path: str | None) -> bool:
        """`reload` with the config read from `path` (None: the shipped default), as SIGHUP does."""
        try:
            new = load_config(path)
        except NkprobeError as exc:
            self.results.record_reload(False)
            log.error("config reload failed, keeping the running config: %s", exc)
            return False
        ok = await self.reload(new)
        if ok:
            log.info("config reloaded from %s", path or "the shipped default")
        return ok

    # -- running -------------------------------------------------------------------------------------

    async def run(
        self,
        netns: str | None,
        stop: threading.Event,
        *,
        config_path: str | None = None,
        handle_signals: bool = False,
        early_reload: threading.Event | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> int:
        """Probe, tag, record and reload until `stop` is set; the exit status (1: a loop of ours died)."""
        loop = asyncio.get_running_loop()
        config, results = self._config, self.results
        engine = self.engine = self._open_engine(netns)
        pinger = self.pinger = Pinger(engine, lazy=True)
        writer = self.writer = self._open_history()
        scheduler = Scheduler(
            config, results=results, probe=self.probe, trace_round=self.round, pending=self.tracking.pending
        )
        self.scheduler = scheduler
        wake = asyncio.Event()  # a signal: look at `stop` and `reload` now
        reload = False

        def on_stop() -> None:
            stop.set()
            wake.set()

        def on_reload() -> None:
            nonlocal reload
            reload = True
            wake.set()

        if handle_signals:
            loop.add_signal_handler(signal.SIGTERM, on_stop)
            loop.add_signal_handler(signal.SIGINT, on_stop)
            loop.add_signal_handler(signal.SIGHUP, on_reload)
            if early_reload is not None and early_reload.is_set():  # a SIGHUP while we were starting
                on_reload()
        watcher = LocalNetWatcher(
            config.targets[0].address if config.targets else config.destination.prefixes[0].split("/")[0],
            netns=netns,
            on_change=lambda: scheduler.trigger(Trigger.LOCAL_NETWORK),
            on_egress=results.set_egress,
            on_look=lambda e: self.vantage.egress(route=e.oif is not None, link_up=e.up),
            on_error=lambda: results.count_error("localnet"),
        )
        if self.freeze_gc:
            freeze_heap()
        tasks = [
            asyncio.create_task(scheduler.run(), name="scheduler"),
            asyncio.create_task(watcher.run(), name="localnet"),
        ]
        self._start_bgp()
        if on_ready is not None:
            on_ready()
        poll = None if handle_signals else STOP_POLL_S
        try:
            while not stop.is_set():
                # Woken by a signal or a loop that ended, not by a clock: an idle agent costs nothing.
                woken = asyncio.ensure_future(wake.wait())
                running = [task for task in tasks if not task.done()]
                await asyncio.wait([woken, *running], timeout=poll, return_when=FIRST_COMPLETED)
                woken.cancel()
                wake.clear()
                if reload:
                    reload = False
                    await self.reload_file(config_path)
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        # A bug in our own loop: say so and exit 1 (README "Commands"), rather than run
                        # blind.
                        log.error("%s stopped: %r", task.get_name(), task.exception())
                        return 1
        finally:
            log.info("stopping: finishing history writes")
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_bgp()
            if not await asyncio.to_thread(writer.close, 5.0):
                log.error("some path changes could not be written before exit")
            pinger.close()
            engine.close()
        return 0

    def _open_engine(self, netns: str | None) -> ProbeEngine:
        """The probe engine, started, with the engine's own allowlist: the last line of the hard rule (a
        reload replaces it)."""
        config, results = self._config, self.results
        engine = open_engine(
            Budget(config.agent.max_pps),
            netns,
            on_send=lambda proto: results.record_packets(proto, 1),
            on_send_error=lambda _errno: results.count_error("send"),
            allow=Allowlist(config.destination.prefixes),
        )
        engine.start()
        return engine

    def _open_history(self) -> HistoryWriter:
        """The history writer of agent.state_dir, its thread started."""
        config = self._config
        writer = HistoryWriter(
            config.agent.state_dir,
            retention_days=config.history.retention_days,
            prune_interval_s=config.history.prune_interval_s,
            max_pending=config.history.max_pending,
        )
        writer.start()
        return writer

    # -- the live BGP view -----------------------------------------------------------------------------

    def live_status(self) -> LiveStatus | None:
        """The live BGP view's status for a scrape; None while it is off (DESIGN idea 8)."""
        feed = self.bgp_feed
        return feed.status() if feed is not None else None

    def _start_bgp(self) -> None:
        """With [bgp] live, the view's I/O as a task beside the probes (which never wait on it)."""
        cfg = self._config
        if not cfg.bgp.live:
            self.bgp_feed = None
            return
        from agent.bgp.feed import LiveFeed

        feed = LiveFeed.from_config(cfg, on_change=self._bgp_changed)
        self.bgp_feed = feed
        self._bgp_task = asyncio.create_task(self._run_bgp(feed), name="bgp live view")

    async def _run_bgp(self, feed: LiveFeed) -> None:
        try:
            await feed.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the view: BGP goes stale, probing goes on
            log.error("the live BGP view stopped: %r", exc)

    async def _stop_bgp(self) -> None:
        task, self._bgp_task = self._bgp_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.bgp_feed = None

    def _bgp_changed(self, change: Change) -> None:
        """Routing moved for a /24: trace its targets now (inside the packet budget, as any trigger)."""
        if self.scheduler is not None:
            log.info("bgp: %s, tracing %s now", change.describe(), change.prefix)
            self.scheduler.trigger(Trigger.BGP, change.prefix)


def freeze_heap() -> None:
    """Put every object alive now out of the cyclic garbage collector's reach (gc.freeze), after a full
    collection; the objects frozen before are thawed first, so a reload's garbage is collected.

    The modules, the config and the AS table live as long as the process, yet each collection of the
    oldest generation walked all of them again, from an event loop that wakes once a second with a cold
    cache: measured with 4 targets pinged every second (bench/footprint.py's lab, 45 s runs), the agent
    spent 2.3-2.7 ms of CPU a second without this and 1.1-1.3 ms with it (issue 25). Objects made later
    are collected as before."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    # The free memory that start-up (imports, the config, reading the AS table) left between live
    # objects goes back to the kernel (malloc_trim(3) releases whole free pages anywhere in the heap, not
    # only at its top as free() does): 0.5 MiB resident with the lab config (issue 25).
    import ctypes  # already loaded on the agent's path (agent.net.sockets)

    with contextlib.suppress(OSError, AttributeError):  # not glibc: its own allocator
        ctypes.CDLL(None).malloc_trim(0)
