"""CPU time per probe of the Paris traceroute core (target: <= 100 µs a probe on a Raspberry Pi class CPU).

Two figures, both from time.process_time over many probes:
- build+parse+match: ProbeBuilder.build, parse of the reply (a time exceeded quoting the probe),
  match_key and the session-table lookup: the per-packet work of the send and receive paths;
- session cycle: the above plus the session's own bookkeeping (next_probes, sent, on_reply, timers,
  result), i.e. everything the agent spends per probe except the system calls.

Replies are synthesized beforehand (they come from the network, not from our CPU).

    /opt/nkvenv/bin/python bench/probe_cpu.py [--probes N]
"""

from __future__ import annotations

import argparse
import sys
import time

from agent.lab import synth
from agent.lab.sim import SimNetwork
from agent.model import Protocol
from agent.packets.build import ProbeBuilder
from agent.packets.parse import match_key, parse
from agent.trace import ReplyTable, Session, TraceParams, flow_spec

DST, SRC = "198.19.176.10", "198.18.0.2"
TARGET_US = 100.0


def bench_packet_path(protocol: Protocol, n: int) -> float:
    builder = ProbeBuilder(flow_spec(protocol, DST, 1, src=SRC))
    replies = [
        synth.icmp_error(builder.build(ttl % 30 + 1, i + 1), "198.18.1.1") for i, ttl in enumerate(range(n))
    ]
    sessions = {(protocol, DST, (builder.flow.sport, builder.flow.dport)): builder}
    started = time.process_time()
    for i in range(n):
        builder.build(i % 30 + 1, i + 1)
        reply = parse(replies[i])
        assert reply is not None
        assert match_key(reply).session_key in sessions
    return (time.process_time() - started) / n * 1e6


def bench_session_cycle(protocol: Protocol, traces: int) -> float:
    routers = [f"198.18.1.{i}" for i in range(1, 16)]
    # Precompute the replies of one trace (identities repeat from trace to trace: same ident_base).
    net = SimNetwork(routers, DST)
    answers: dict[int, bytes] = {}
    probe_count = 0
    started = 0.0
    for trace in range(traces + 1):
        if trace == 1:
            started = time.process_time()  # trace 0 only filled `answers`
        table = ReplyTable()
        session = Session(TraceParams(DST, protocol, src=SRC, window=16, max_hops=32))
        table.register(
            session.key, lambda reply, rx, read_at, s=session: s.on_reply(reply, rx, read_at=read_at)
        )
        now = 0.0
        while not session.done:
            arriving = []
            for probe in session.next_probes(now):
                session.sent(probe, now)
                if trace == 0:
                    answers[probe.ident] = net.answer(probe.data)[0][1]
                else:
                    probe_count += 1
                arriving.append(answers[probe.ident])
            now += 0.01
            for packet in arriving:
                table.dispatch(packet, now)
            deadline = session.next_deadline()
            if deadline is not None and deadline <= now:
                session.on_timer(now)
        session.result()
    return (time.process_time() - started) / max(probe_count, 1) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--probes", type=int, default=30_000)
    args = parser.parse_args()
    worst = 0.0
    for protocol in Protocol:
        packet = bench_packet_path(protocol, args.probes)
        cycle = bench_session_cycle(protocol, max(args.probes // 16, 1))
        worst = max(worst, packet, cycle)
        print(f"{protocol.value:4}  build+parse+match {packet:6.1f} µs/probe  session {cycle:6.1f} µs/probe")
    verdict = "OK" if worst <= TARGET_US else "OVER"
    print(f"probe_cpu: worst {worst:.1f} µs/probe (target <= {TARGET_US:.0f} µs): {verdict}")
    return 0 if worst <= TARGET_US else 1


if __name__ == "__main__":
    sys.exit(main())
