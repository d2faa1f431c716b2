"""`nkprobe trace TARGET`: Paris traceroute(s) with reverse names, AS numbers, RTTs and the upstream tag.

Readable output: one line per hop (address, reverse name, AS, RTTs, reply codes like traceroute's !H !N
!X), then the upstream tag and the evidence for it. `--json`: one RIPE Atlas traceroute result (an array
of them with --flows N), with our additions (README "Commands": hostname, asn and "nkprobe"). An unreachable
target is a result: exit 0 either way.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from agent.commands._collector import collector_paused as paused

if TYPE_CHECKING:
    from agent.classify import Tagger
    from agent.config import Config
    from agent.model import Classification, Path, Reply
    from agent.probers.base import ProbeSpec

PROTOCOLS = ("icmp", "udp", "tcp")
# Run as the program, the process ends as soon as the command returns, without the interpreter's
# teardown (agent.cli._exit_without_teardown): the trace leaves nothing behind to close or write.
EXIT_WITHOUT_TEARDOWN = True
MAX_LOOKUPS = 128  # distinct hop addresses looked up per command (a 64-flow trace has far fewer)
RDNS_WORKERS = 16  # resolver threads: a trace's 15-30 hop addresses are looked up in two rounds at most


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="an address inside the destination prefixes")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="probe protocol (default: [trace] protocol)")
    parser.add_argument(
        "--port",
        type=int,
        help="UDP/TCP destination port (default: the target's port, else [trace] port for tcp, 33435 udp)",
    )
    parser.add_argument("--max-hops", type=int, help="highest TTL to probe (default: [trace] max_hops)")
    parser.add_argument("--flows", type=int, default=1, help="flows (Paris ids 0..N-1) to trace (default 1)")
    parser.add_argument(
        "--asn-file", action="append", default=[], metavar="PATH", help="IP-to-AS file (repeatable)"
    )
    parser.add_argument("--config", metavar="PATH", help="agent config (destination prefixes, max_pps)")
    parser.add_argument(
        "--no-dns", action="store_true", help="do not look up reverse names (default: [names] reverse_dns)"
    )
    parser.add_argument("--json", action="store_true", help="print RIPE Atlas traceroute JSON")


def run(args: argparse.Namespace) -> int:
    with collector_paused():
        return _run(args)


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one command (agent.commands._collector: start-up makes no
    garbage, yet the collector would run 42 times over its imports), and kept out of the interpreter's
    exit.

    One command's own garbage is bounded (a trace of at most 64 flows), so it waits until the command
    ends. At exit the interpreter's final collections walk every object once more (about 11 ms), only
    to run finalizers of cyclic garbage, which Python does not promise at exit (reference manual,
    object.__del__); gc.freeze() in an atexit hook moves every object out of their reach first (atexit
    hooks run before them, Py_FinalizeEx). In a test process that runs commands in-process, the hook
    runs only when that process exits, and the collector is back on after each command.
    """
    global _freeze_registered
    if not _freeze_registered:
        atexit.register(gc.freeze)
        _freeze_registered = True
    with paused():
        yield


_freeze_registered = False


def _run(args: argparse.Namespace) -> int:
    # Start-up is most of a short trace's wall time (bench/startup.py), so only what the probing needs
    # is imported before the first packet: the config, the engine and the prober. The config comes first:
    # once the target is known to be allowed, the resolver check starts, and its grace runs while the
    # engine's modules load. The tagging side (the Tagger with its AS table, RIPE output: a third of the
    # imports) loads in a thread once the first probes are out; the event loop sleeps in epoll most of
    # a trace, so the two overlap, and receive times come from the kernel (SO_TIMESTAMPNS), so the
    # thread cannot move an RTT.
    from agent.commands._probing import config_and_target, import_asyncio_without_ssl
    from agent.errors import UsageError
    from agent.model import Protocol

    if not 1 <= args.flows <= 64:
        raise UsageError("--flows takes 1..64")
    if args.max_hops is not None and not 1 <= args.max_hops <= 255:
        raise UsageError("--max-hops takes 1..255")
    config, target = config_and_target(args.config, args.target)
    record = config.target(target, trace_protocol=args.protocol)
    if args.port is not None and (record.trace_protocol == Protocol.ICMP or not 0 < args.port < 65536):
        raise UsageError("--port takes 1..65535 and only with --protocol udp or tcp")
    files = [*config.asn.files, *args.asn_file]
    for name in files:  # a missing file is a usage error before any packet, not after the trace
        if not os.access(name, os.R_OK):
            raise UsageError(f"cannot read IP-to-AS file {name}: check the path (--asn-file, asn.files)")
    resolver = ResolverCheck(target) if config.names.reverse_dns and not args.no_dns else None
    import_asyncio_without_ssl()
    from agent.probers.base import trace_spec  # the engine's modules (and asyncio), with it

    spec = trace_spec(config, record, flows=args.flows, port=args.port, max_hops=args.max_hops)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nkprobe-tagging") as pool:
        tagging: list[Future[Tagger]] = []

        def load_tagger() -> None:
            tagging.append(pool.submit(_load_tagger, config, args.asn_file))

        paths, names = _trace_and_names(config, spec, resolver, load_tagger)
        tagger = tagging[0].result()  # raises what loading raised (a bad IP-to-AS file: exit 2)
    addresses = {a for p in paths for h in p.hops for a in h.addresses}
    asns = {a: tagger.asn(a) for a in addresses}
    tags = [tagger.tag(p, names) for p in paths]
    if args.json:
        import json

        from agent.formats.atlas_out import to_ripe

        objs = [to_ripe(p, c, names, asns) for p, c in zip(paths, tags, strict=True)]
        print(json.dumps(objs if args.flows > 1 else objs[0]))
        return 0
    for i, (path, c) in enumerate(zip(paths, tags, strict=True)):
        if i:
            print()
        print(render(path, c, names, asns))
    return 0


def _load_tagger(config: Config, extra_files: list[str]) -> Tagger:
    """The Tagger and the RIPE output code, loaded off the probing path (agent.classify.Tagger)."""
    from agent.classify import Tagger
    from agent.formats import atlas_out  # noqa: F401  (imported here, used after the trace)

    return Tagger.from_config(config, extra_files)


def _trace_and_names(
    config: Config, spec: ProbeSpec, resolver: ResolverCheck | None, started: Callable[[], None]
) -> tuple[tuple[Path, ...], dict[str, str]]:
    """The traces, then the reverse names of their hops when the resolver answers (no `resolver`: no
    names); `started()` is called once the first probes are on the wire."""
    import asyncio

    from agent.commands._probing import run_with_engine
    from agent.net.engine import ProbeEngine
    from agent.probers import trace

    async def body(engine: ProbeEngine) -> tuple[tuple[Path, ...], dict[str, str]]:
        tracing = asyncio.ensure_future(trace(engine, spec))
        # One turn of the loop runs the trace's first step, which sends its first probes; only then
        # does the tagging thread start, whose imports would otherwise hold the GIL in front of them
        # (a thread waits up to sys.getswitchinterval(), 5 ms, for it).
        await asyncio.sleep(0)
        started()
        paths = await tracing
        names: dict[str, str] = {}
        if resolver is not None and resolver.answers():
            addresses = {a for p in paths for h in p.hops for a in h.addresses}
            names = await reverse_names(addresses, config.names.timeout_s)
        return paths, names

    return run_with_engine(config, body)


class ResolverCheck:
    """Whether the system resolver answers at all, asked once at start-up, during the trace.

    One reverse lookup of the target runs in a daemon thread from the start. A name, or a definite "no
    such name" (h_errno HOST_NOT_FOUND / NO_DATA, RFC 1035 NXDOMAIN), means the resolver answers, and
    the hops' names are looked up in parallel within [names] timeout_s. A failure (TRY_AGAIN: no
    server reachable, as in the lab) or no answer by the end of the trace (but at least `grace_s`
    after the start) means it does not, and no time is spent waiting for names nobody will give."""

    ANSWERED_ERRNOS = frozenset({1, 4})  # netdb.h HOST_NOT_FOUND, NO_DATA

    def __init__(
        self, address: str, grace_s: float = 0.1, resolve: Callable[[str], object] | None = None
    ) -> None:
        from agent.classify import rdns

        self._deadline = time.monotonic() + grace_s
        self._resolve = resolve or rdns.gethostbyaddr
        self._done = threading.Event()
        self._answered = False
        threading.Thread(target=self._run, args=(address,), name="nkprobe-resolver", daemon=True).start()

    def _run(self, address: str) -> None:
        try:
            self._resolve(address)
            self._answered = True
        except socket.herror as exc:
            self._answered = exc.errno in self.ANSWERED_ERRNOS
        except (OSError, UnicodeError):
            self._answered = False
        self._done.set()

    def answers(self) -> bool:
        self._done.wait(max(0.0, self._deadline - time.monotonic()))
        return self._done.is_set() and self._answered


async def reverse_names(addresses: set[str], timeout_s: float) -> dict[str, str]:
    """Reverse names of `addresses`, looked up in parallel after the trace, within `timeout_s` in all
    ([names] timeout_s): a slow resolver must not hold the answer hostage (the name is decoration; the
    tag never depends on DNS being up). agent.classify.rdns runs the blocking lookups in daemon threads, so
    one stuck in gethostbyaddr (no timeout of its own) delays neither this answer nor the process's exit.
    A cache of its own: nothing outlives the command, and no future is shared across event loops."""
    from agent.classify import rdns

    wanted = sorted(addresses)[:MAX_LOOKUPS]
    if not wanted:
        return {}
    cache = rdns.ReverseNames(
        rdns.system_resolver, max_in_flight=MAX_LOOKUPS, workers=min(RDNS_WORKERS, len(wanted))
    )
    try:
        return await cache.names(wanted, budget_s=timeout_s)
    finally:
        cache.close()  # idle workers exit; one stuck in the resolver is a daemon thread, left behind


def _reply_note(reply: Reply) -> str:
    err = reply.err
    return f" !{err}" if err else ""


def render(
    path: Path, tag: Classification | None, names: Mapping[str, str], asns: Mapping[str, int | None]
) -> str:
    """The readable form of one trace: a header, one line per hop, the outcome, the tag and evidence."""
    how = path.protocol.value + (f" port {path.dst_port}" if path.dst_port is not None else "")
    lines = [
        f"traceroute to {path.target} ({how}, paris id {path.flow_id}) from {path.src or '?'}, "
        f"{len(path.hops)} hops, {path.duration_s * 1000:.0f} ms"
    ]
    for hop in path.hops:
        if hop.silent:
            lines.append(f"{hop.ttl:3d}  " + "  ".join(["*"] * max(1, hop.probes_sent)))
            continue
        parts = []
        for address in hop.addresses:
            replies = [r for r in hop.replies if r.address == address]
            name = names.get(address)
            asn = asns.get(address)
            label = address + (f" ({name})" if name else "") + (f"  AS{asn}" if asn is not None else "")
            rtts = "  ".join(f"{r.rtt_s * 1000:.3f} ms{_reply_note(r)}" for r in replies)
            parts.append(f"{label}  {rtts}")
        lines.append(f"{hop.ttl:3d}  " + "\n     ".join(parts))
    outcome = "reached" if path.reached else f"not reached ({path.stop_reason})"
    lines.append(f"destination {outcome}")
    if tag is not None:
        border = ""
        if tag.border is not None:
            b = tag.border
            border = f" (border: hop {b.hop} {b.address}" + (f" AS{b.asn})" if b.asn is not None else ")")
        lines.append(f"upstream: {tag.upstream}{border}, confidence {tag.confidence}")
        if tag.as_path:
            lines.append("AS path: " + " ".join("?" if a is None else f"AS{a}" for a in tag.as_path))
        lines.extend(f"  - {e}" for e in tag.evidence)
    return "\n".join(lines)
