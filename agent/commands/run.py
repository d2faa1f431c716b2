"""`nkprobe run`: the agent. Scheduled probes, path history, Prometheus metrics.

This module is the composition root of the agent (README "Architecture"): it builds the real sockets
(agent.net), the AS table, the classifier, the history writer, the state, the scheduler and the HTTP server,
and hands them to each other. `run_agent()` is the whole agent as one call, for `nkprobe demo` too.

Signals (with handle_signals): SIGTERM and SIGINT stop the loops, let the history writer commit what is
queued, and exit 0. SIGHUP reloads the config file; an invalid new config is logged, counted
(nkprobe_config_reloads_total{result="failure"}, nkprobe_fault{kind="config"}) and the old one kept.
The listen address and the namespace are fixed for the life of the process (a reload that changes them
says so in the log).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

# Light at module level: `nkprobe run --help` imports this module, and asyncio (which pulls in ssl),
# signal and threading cost tens of milliseconds; they are imported where the agent starts.
if TYPE_CHECKING:
    import argparse
    import threading
    from collections.abc import Callable

    from agent.config import Config
    from agent.history import HistoryWriter
    from agent.model import Classification, Path
    from agent.net.engine import ProbeEngine
    from agent.scheduler import HistorySink, PathChange, Pinger, Scheduler, Tracer
    from agent.state import State

log = logging.getLogger("nkprobe.run")

STOP_POLL_S = 0.2
HISTORY_POLL_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="the agent's TOML config (default: the shipped one)")
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        metavar="HOST:PORT",
        help="where to serve /metrics (default: agent.listen of the config)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        metavar="PATH",
        help="TLS and basic auth, in the Prometheus exporter-toolkit format (default: agent.web_config_file)",
    )
    parser.add_argument(
        "--netns",
        metavar="NAME",
        help="open the probe sockets in network namespace NAME; the HTTP server stays in this one",
    )
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))


def run(args: argparse.Namespace) -> int:
    import threading

    from agent.config import load_config

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = load_config(args.config)
    return run_agent(
        config,
        args.listen,
        args.netns,
        threading.Event(),
        config_path=args.config,
        web_config_file=args.web_config,
        handle_signals=True,
    )


def _build_state(config: Config) -> State:
    from agent import __version__
    from agent.state import State

    return State(version=__version__, **_state_settings(config))


def _reconfigure_state(state: State, config: Config) -> None:
    state.reconfigure(**_state_settings(config))


def _state_settings(config: Config) -> dict[str, Any]:
    """What the state takes from the config, at start-up and on every reload alike."""
    from agent.pathstate import tag_values

    return {
        "agent_name": config.agent.name,
        "targets": config.targets,
        "ping_protocols": config.ping_protocols_for,
        "trace_protocol": config.trace.protocol,
        "tags": tag_values(config.upstreams),
    }


def _check_targets(config: Config) -> None:
    """The hard rule: every target inside destination.prefixes (agent.allowlist), before any socket."""
    from agent.allowlist import Allowlist

    allow = Allowlist(config.destination.prefixes)
    for t in config.targets:
        allow.check(t.address)


class _Classifier:
    """Path -> Classification with the AS table and settings of the config in use (swapped on reload)."""

    def __init__(self, config: Config, state: State) -> None:
        self.load(config, state)

    def load(self, config: Config, state: State) -> None:
        from agent.asn import configured_table
        from agent.bgp import load_check
        from agent.classify import Settings

        table = configured_table(config)
        # [bgp] snapshot, read with the AS tables: a reload that cannot read it is refused as a whole.
        bgp = load_check(
            config.bgp.snapshot, config.destination.asn, config.destination.prefixes, config.upstreams
        )
        self.bgp = bgp
        self.lookup = table.lookup
        self.settings = Settings.from_config(config)
        state.set_asn_info(config.asn.files, len(table), table.snapshot_time)

    def __call__(self, path: Path) -> Classification:
        from agent.classify import classify

        # No reverse names on the probing path: a PTR lookup would send hop addresses to the system
        # resolver (README "Commands", Safety); the AS table and configured borders decide.
        return classify(path, self.lookup, self.settings)


def run_agent(
    config: Config,
    listen: str | None = None,
    netns: str | None = None,
    stop_event: threading.Event | None = None,
    *,
    config_path: str | None = None,
    web_config_file: str | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Run the agent until `stop_event` is set (or SIGTERM with handle_signals); the exit status.

    `listen` and `netns` override the config's; `on_ready(port)` is called once metrics are served
    (port 0 in `listen` picks a free port). Configuration and privilege faults raise NkprobeError
    before anything is sent.
    """
    import asyncio
    import signal
    import threading

    from agent.exporter import build_registry
    from agent.exporter.server import MetricsServer
    from agent.exporter.webconfig import load_web_config

    _check_targets(config)
    stop = stop_event or threading.Event()
    early_reload = threading.Event()
    if handle_signals:
        # Before anything is served: once /-/healthy answers, a supervisor may send SIGHUP or SIGTERM,
        # and their default action would kill us. The event loop takes over these signals in _main.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
        signal.signal(signal.SIGHUP, lambda _sig, _frame: early_reload.set())
    web = load_web_config(web_config_file or config.agent.web_config_file or None)
    state = _build_state(config)
    classifier = _Classifier(config, state)
    server = MetricsServer(
        listen or config.agent.listen,
        build_registry(state, bgp=lambda: classifier.bgp),
        version=state.snapshot().version,
        agent_name=lambda: state.snapshot().agent_name,
        web=web,
    )
    server.start()
    log.info("serving metrics on %s (port %d)", listen or config.agent.listen, server.port)
    try:
        return asyncio.run(
            _main(
                config,
                state,
                classifier,
                netns or config.agent.netns or None,
                stop,
                config_path=config_path,
                handle_signals=handle_signals,
                early_reload=early_reload,
                on_ready=(lambda: on_ready(server.port)) if on_ready else None,
            )
        )
    finally:
        server.stop()


async def _main(
    config: Config,
    state: State,
    classifier: _Classifier,
    netns: str | None,
    stop: threading.Event,
    *,
    config_path: str | None,
    handle_signals: bool,
    early_reload: threading.Event,
    on_ready: Callable[[], None] | None,
) -> int:
    import asyncio
    import contextlib
    import signal

    from agent.allowlist import Allowlist
    from agent.budget import Budget
    from agent.history import HistoryWriter
    from agent.localnet import LocalNetWatcher
    from agent.net.engine import open_engine
    from agent.pathstate import Trigger
    from agent.scheduler import Scheduler

    loop = asyncio.get_running_loop()
    # The engine's own allowlist, the last line of the hard rule: a reload replaces it (_reload).
    engine = open_engine(
        Budget(config.agent.max_pps),
        netns,
        on_send=lambda proto: state.record_packets(proto, 1),
        on_send_error=lambda _errno: state.count_error("send"),
        allow=Allowlist(config.destination.prefixes),
    )
    engine.start()
    writer = HistoryWriter(
        config.agent.state_dir,
        retention_days=config.history.retention_days,
        prune_interval_s=config.history.prune_interval_s,
        max_pending=config.history.max_pending,
    )
    writer.start()
    holder = {"config": config}
    pinger, tracer = _probers(engine, holder)
    scheduler = Scheduler(
        config,
        state=state,
        pinger=pinger,
        tracer=tracer,
        classify=classifier,
        history=_history_sink(writer, holder),
    )
    reload_requested = asyncio.Event()
    if handle_signals:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
        if early_reload.is_set():  # a SIGHUP that came while we were starting
            reload_requested.set()
    watcher = LocalNetWatcher(
        config.targets[0].address if config.targets else config.destination.prefixes[0].split("/")[0],
        netns=netns,
        on_change=lambda: scheduler.trigger(Trigger.LOCAL_NETWORK),
        on_egress=state.set_egress,
        on_error=lambda: state.count_error("localnet"),
    )
    tasks = [
        asyncio.create_task(scheduler.run(), name="scheduler"),
        asyncio.create_task(watcher.run(), name="localnet"),
        asyncio.create_task(_poll_history(writer, state), name="history status"),
    ]
    if on_ready is not None:
        on_ready()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reload_requested.wait(), timeout=STOP_POLL_S)
            if reload_requested.is_set():
                reload_requested.clear()
                await _reload(
                    path=config_path,
                    holder=holder,
                    state=state,
                    classifier=classifier,
                    scheduler=scheduler,
                    engine=engine,
                )
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    # A bug in our own loop: say so and exit 1 (README "Commands"), rather than run blind.
                    log.error("%s stopped: %r", task.get_name(), task.exception())
                    return 1
    finally:
        log.info("stopping: finishing history writes")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await scheduler.flush()
        if not await asyncio.to_thread(writer.close, 5.0):
            log.error("some path changes could not be written before exit")
        engine.close()
    return 0


def _probers(engine: ProbeEngine, holder: dict[str, Config]) -> tuple[Pinger, Tracer]:
    from agent.model import PingResult, Protocol, Target
    from agent.probers import ProbeSpec, latency
    from agent.probers import trace as trace_probe
    from agent.probers.base import trace_spec

    async def ping(target: Target, protocol: str) -> PingResult:
        cfg = holder["config"]
        spec = ProbeSpec(
            target=target.address,
            protocol=Protocol(protocol),
            port=cfg.ping_port_for(target.address) if protocol == "tcp" else None,
            timeout_s=cfg.ping.timeout_s,
        )
        return await latency(engine, spec)

    async def trace(target: Target, first_flow: int, flows: int) -> tuple[Path, ...]:
        spec = trace_spec(holder["config"], target.address, flows=flows, first_flow=first_flow)
        return await trace_probe(engine, spec)

    return ping, trace


def _history_sink(writer: HistoryWriter, holder: dict[str, Config]) -> HistorySink:
    from agent.history import PathChange as Row
    from agent.history import hops_from_path

    async def record(change: PathChange) -> None:
        event, c = change, change.classification
        await writer.record(
            Row(
                time=event.change.at,
                agent=holder["config"].agent.name,
                target=event.target.address,
                prefix=event.target.prefix,
                old_tag=event.change.old,
                new_tag=event.change.new,
                as_path=c.as_path if c else (),
                hops=hops_from_path(event.path) if event.path else (),
                evidence=c.evidence if c else (),
                ratio=dict(event.ratio) or None,
                protocol=str(event.path.protocol) if event.path else "",
                border=c.border.address if c and c.border else None,
            )
        )

    return record


async def _poll_history(writer: HistoryWriter, state: State) -> None:
    """Mirror the writer's health into the metrics: a broken disk shows as nkprobe_fault{kind="history"}."""
    import asyncio

    last_error: str | None = None
    while True:
        status = writer.status()
        state.set_history_status(
            pending=status.pending, written=status.written, dropped=status.dropped, fault=status.fault
        )
        if status.last_error is not None and status.last_error != last_error:
            state.count_history_write_error()
            log.error("path history: %s", status.last_error)
        last_error = status.last_error
        await asyncio.sleep(HISTORY_POLL_S)


async def _reload(
    *,
    path: str | None,
    holder: dict[str, Config],
    state: State,
    classifier: _Classifier,
    scheduler: Scheduler,
    engine: ProbeEngine,
) -> None:
    from agent.allowlist import Allowlist
    from agent.config import load_config
    from agent.errors import NkprobeError

    old = holder["config"]
    try:
        new = load_config(path)
        _check_targets(new)
        classifier.load(new, state)
    except NkprobeError as exc:
        state.record_reload(False)
        log.error("config reload failed, keeping the running config: %s", exc)
        return
    for what, before, after in (
        ("agent.listen", old.agent.listen, new.agent.listen),
        ("agent.netns", old.agent.netns, new.agent.netns),
        ("agent.state_dir", old.agent.state_dir, new.agent.state_dir),
    ):
        if before != after:
            log.warning("%s changed; that takes a restart (kept %r)", what, before)
    holder["config"] = new
    if new.destination.prefixes != old.destination.prefixes:
        # Before the scheduler moves to the new targets: a narrower list stops probes to what it no
        # longer covers at once, and a wider one is in place before the targets it admits are probed.
        engine.set_allowlist(Allowlist(new.destination.prefixes))
        log.info("destination.prefixes now %s", ", ".join(new.destination.prefixes))
    if new.agent.max_pps != old.agent.max_pps:
        # In place: the sends of the last second still count against the new cap (a fresh Budget would
        # let up to old + new caps leave within one second of the reload).
        engine.budget.set_rate(new.agent.max_pps)
    _reconfigure_state(state, new)
    await scheduler.reconfigure(new)
    state.record_reload(True)
    log.info("config reloaded from %s", path or "the shipped default")
