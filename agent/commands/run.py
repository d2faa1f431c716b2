"""`nkprobe run`: the agent. Scheduled probes, path history, Prometheus metrics.

This module parses the flags and starts: `run_agent()` serves the metrics and runs an `agent.agent.Agent`
(which owns the config in use, the probes, the history and reload) until stopped; it is the whole agent
as one call, for `nkprobe demo` too.

Signals (with handle_signals): SIGTERM and SIGINT stop the loops, let the history writer commit what is
queued, and exit 0. SIGHUP reloads the config file; an invalid new config is logged, counted
(nkprobe_config_reloads_total{result="failure"}, nkprobe_fault{kind="config"}) and the old one kept.
The listen address and the namespace are fixed for the life of the process (a reload that changes them
says so in the log).
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

# Light at module level: `nkprobe run --help` imports this module, and asyncio (which pulls in ssl),
# signal and threading cost tens of milliseconds; they are imported where the agent starts.
if TYPE_CHECKING:
    import argparse
    import threading
    from collections.abc import Callable

    from agent.agent import Agent
    from agent.config import Config
    from agent.exporter.server import StatusOnDemand
    from agent.exporter.status import StatusSource

log = logging.getLogger("nkprobe.run")

M_ARENA_MAX = -8  # glibc <malloc.h>


def single_malloc_arena() -> bool:
    """Have every thread allocate from glibc's main malloc arena: mallopt(3) M_ARENA_MAX = 1, the
    in-process form of MALLOC_ARENA_MAX=1. Called before the agent starts a thread.

    By default glibc gives each new thread that allocates an arena of its own (up to 8 per core), and
    each keeps the pages it touched: the HTTP server's per-connection threads and the history writer
    cost the agent 0.6 MiB resident that way (issue 25). They allocate little, and under the GIL never
    at once, so sharing one arena costs no time. False where it does not apply (not glibc)."""
    import ctypes  # already loaded on the agent's path (agent.net.sockets)

    try:
        return bool(ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError):  # no mallopt: another C library, with its own allocator
        return False


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


def status_source(agent: Agent) -> StatusOnDemand:
    """The status page's view of a running agent: its results, history (and its writer's status), BGP
    view and AS lookups, each read when a page is built (a reload's new tagger shows on the next one).
    Made at the page's first request, so the page's modules are not resident until someone opens it."""
    from agent.exporter.server import StatusOnDemand

    def asn_of(address: str) -> int | None:
        return agent.tagger.asn(address)  # the tagger of the moment: a reload replaces it

    def make() -> StatusSource:
        from agent.exporter.status import StatusSource

        return StatusSource(
            agent.results.snapshot,
            state_dir=lambda: agent.config.agent.state_dir,
            bgp=lambda: agent.tagger.bgp,
            asn_of=asn_of,
            max_pps=lambda: agent.config.agent.max_pps,
            history_status=lambda: agent.writer.status() if agent.writer is not None else None,
        )

    return StatusOnDemand(make)


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

    single_malloc_arena()

    from agent.agent import Agent
    from agent.exporter import build_registry
    from agent.exporter.collector import Identity
    from agent.exporter.server import MetricsServer
    from agent.exporter.webconfig import load_web_config
    from agent.identity import KeptId

    agent = Agent(config)  # checks the targets against the allowlist and loads the AS tables
    agent.freeze_gc = handle_signals  # the process is ours (the CLI), not a test's (agent.agent.freeze_heap)
    # Made on the first start, kept in the state directory across reinstalls, upgrades and renames.
    # agent.state_dir takes a restart, so the id read here stays the agent's for the process.
    the_id = KeptId(config.agent.state_dir)
    the_id()
    stop = stop_event or threading.Event()
    early_reload = threading.Event()
    if handle_signals:
        # Before anything is served: once /-/healthy answers, a supervisor may send SIGHUP or SIGTERM,
        # and their default action would kill us. The event loop takes over these signals in Agent.run.
        signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())
        signal.signal(signal.SIGHUP, lambda _sig, _frame: early_reload.set())
    web = load_web_config(web_config_file or config.agent.web_config_file or None)
    results = agent.results
    # The BGP check in use, the history writer's health and the live BGP view are read from them at
    # scrape time.
    registry = build_registry(
        results,
        bgp=lambda: agent.tagger.bgp,
        history=lambda: agent.writer.status() if agent.writer is not None else None,
        live=agent.live_status,
        identity=lambda: Identity(owner=agent.config.agent.owner, id=the_id()),
        vantage=agent.vantage,
    )
    server = MetricsServer(
        listen or config.agent.listen,
        registry,
        version=results.snapshot().version,
        agent_name=lambda: results.snapshot().agent_name,
        web=web,
        status=status_source(agent),
    )
    server.start()
    log.info("serving metrics on %s (port %d)", listen or config.agent.listen, server.port)
    try:
        return asyncio.run(
            agent.run(
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
