"""`nkprobe ping TARGET`: latency probes (ICMP echo or TCP SYN), their RTTs, loss and a summary.

`--json` prints one object in the RIPE Atlas ping result format (type "ping", one `{"rtt": MS}` or
`{"x": "*"}` per probe, then sent/rcvd/min/avg/max), which ripe.atlas.sagan reads.

Without CAP_NET_RAW, `--protocol icmp` falls back to an unprivileged ICMP ping socket through icmplib
(agent.net.dgram_ping) where net.ipv4.ping_group_range allows it: same output, with the reply TTL unknown
(`ttl=?`, JSON "ttl": null) and user-space RTTs. TCP probes need the raw socket.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.config import Config
    from agent.model import PingResult
    from agent.probers.base import ProbeSpec

PROTOCOLS = ("icmp", "tcp")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="an address inside the destination prefixes")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="icmp", help="probe kind (default icmp)")
    parser.add_argument("--port", type=int, help="TCP destination port (default: [ping] port, 80)")
    parser.add_argument("--count", type=int, default=5, help="probes to send (default 5)")
    parser.add_argument("--interval", type=float, help="seconds between probes (default: [ping] interval_s)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for each answer ([ping] timeout_s)")
    parser.add_argument("--config", metavar="PATH", help="agent config (destination prefixes, max_pps)")
    parser.add_argument("--json", action="store_true", help="print RIPE Atlas ping JSON")


def run(args: argparse.Namespace) -> int:
    import asyncio
    import json
    import statistics
    from collections import deque

    from agent.commands._probing import config_and_target, run_with_engine
    from agent.errors import PrivilegeError, UsageError
    from agent.formats import atlas_out
    from agent.model import Protocol
    from agent.net.engine import ProbeEngine
    from agent.probers import latency
    from agent.probers._latency import LATENCY_FLOWS
    from agent.probers.base import ProbeSpec

    if args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.port is not None and (args.protocol != "tcp" or not 0 < args.port < 65536):
        raise UsageError("--port takes 1..65535 and only with --protocol tcp")
    config, target = config_and_target(args.config, args.target)
    interval = config.ping.interval_s if args.interval is None else args.interval
    timeout = config.ping.timeout_s if args.timeout is None else args.timeout
    if interval < 0 or timeout <= 0:
        raise UsageError("--interval must be >= 0 and --timeout > 0")
    port = (args.port or config.target(target).ping_port) if args.protocol == "tcp" else None
    spec = ProbeSpec(target, Protocol(args.protocol), port=port, timeout_s=timeout)
    readable = not args.json
    max_in_flight = len(LATENCY_FLOWS)

    source: list[str] = []

    async def body(engine: ProbeEngine) -> list[PingResult]:
        source.append(engine.source_for(target))
        if readable:
            how = f"tcp port {port}" if port is not None else "icmp echo"
            print(f"PING {target} ({how}), {args.count} probes", flush=True)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one(seq: int) -> PingResult:
            # Probes leave on a fixed schedule, however long answers take (like ping(8)).
            await asyncio.sleep(max(0.0, start + seq * interval - loop.time()))
            return await latency(engine, spec)

        # Each probe in flight holds one latency flow id (agent.probers._latency): at most that many
        # tasks exist at once, created as earlier probes finish, so a --count of any size never runs
        # out of flows. A probe whose slot frees up late leaves at once (its scheduled time has passed).
        window: deque[asyncio.Task[PingResult]] = deque()
        results: list[PingResult] = []
        started = 0
        try:
            while started < args.count or window:
                while started < args.count and len(window) < max_in_flight:
                    window.append(asyncio.create_task(one(started)))
                    started += 1
                results.append(await window.popleft())
                if readable:
                    print(line(len(results), results[-1]), flush=True)
        finally:
            for task in window:
                task.cancel()
        return results

    try:
        results = run_with_engine(config, body)
    except PrivilegeError:
        if spec.protocol is not Protocol.ICMP:
            raise
        results = _unprivileged(args, config, spec, interval=interval, readable=readable, source=source)
    rtts = [r.rtt_s * 1000 for r in results if r.rtt_s is not None]
    if args.json:
        print(json.dumps(atlas_out.to_ripe_ping(results, spec, source[0])))
        return 0
    loss = 100.0 * (len(results) - len(rtts)) / len(results)
    print(f"--- {target} ping statistics ---")
    print(f"{len(results)} sent, {len(rtts)} received, {loss:.0f}% loss")
    if rtts:
        mn, avg, mx, mdev = min(rtts), statistics.fmean(rtts), max(rtts), statistics.pstdev(rtts)
        print(f"rtt min/avg/max/mdev = {mn:.3f}/{avg:.3f}/{mx:.3f}/{mdev:.3f} ms")
    return 0


def _unprivileged(
    args: argparse.Namespace,
    config: Config,
    spec: ProbeSpec,
    *,
    interval: float,
    readable: bool,
    source: list[str],
) -> list[PingResult]:
    """The probes through an ICMP ping socket (no CAP_NET_RAW); PrivilegeError if that is refused too."""
    from agent.net.dgram_ping import UnprivilegedPinger
    from agent.net.sockets import source_address

    pinger = UnprivilegedPinger()
    try:
        source.append(source_address(spec.target))
        print(
            "note: no CAP_NET_RAW: ICMP echo through a ping socket (net.ipv4.ping_group_range); "
            "the reply TTL is unknown and RTTs are taken in user space",
            file=sys.stderr,
        )
        if readable:
            print(f"PING {spec.target} (icmp echo), {args.count} probes", flush=True)
        seq = iter(range(1, args.count + 1))
        return pinger.run(
            spec.target,
            count=args.count,
            interval=interval,
            timeout=spec.timeout_s,
            max_pps=config.agent.max_pps,
            on_result=(lambda r: print(line(next(seq), r), flush=True)) if readable else (lambda _r: None),
        )
    finally:
        pinger.close()


def line(seq: int, result: PingResult) -> str:
    """One readable line per probe."""
    if result.rtt_s is None:
        err = result.extra.get("err")
        return f"seq={seq} " + (f"!{err} from {result.extra.get('from')}" if err else "no answer")
    flags = f" flags={result.extra['flags']}" if "flags" in result.extra else ""
    ttl = "?" if result.reply_ttl is None else result.reply_ttl  # unknown through a ping socket
    return f"seq={seq} from {result.target}: ttl={ttl}{flags} time={result.rtt_s * 1000:.3f} ms"
