"""Latency probes (ICMP echo or TCP SYN) over the shared engine: the code ping.py, tcp.py and the agent's
scheduled probes share.

A latency probe is a single packet with an ordinary TTL whose flow (ICMP identifier or TCP source port)
is taken from a range the traceroute flows never use, so pings and traces of the same target run side by
side on one socket set. Answers: an echo reply, a SYN-ACK or a RST count (the RTT and the reply's TTL);
an ICMP error quoting the probe (e.g. !X from a filtering router) is a loss with its "err" letter.

`Pinger` keeps one flow per target and protocol, as ping(8), scamper and RIPE Atlas do: every probe of it
crosses the same per-flow balancers, so a change of the reply TTL or the RTT level (the agent's re-trace
triggers, agent.tracking.LatencyWatch) is a change of the path and not of the hash. Probes of one flow
differ by their identity (a counter), and the replies are matched in a dict: no task, future or session
per probe. The agent sends several pings a second for months on a Pi (issue 25: 1,190 µs of CPU a packet
with a task, a future and a timeout task per probe); `latency_probe`, the one-shot form the `nkprobe ping`
command uses, is the same code with a future around it.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from agent.errors import UsageError
from agent.model import UNREACHABLE_ERR, PingResult, Protocol, ReplyKind
from agent.net.clock import receive_time
from agent.net.engine import ProbeEngine, QueuedSend
from agent.packets.build import ProbeBuilder
from agent.packets.parse import ParsedReply
from agent.probers.base import ProbeSpec
from agent.trace.flow import MAX_FLOW_ID, flow_spec

# Flow ids MAX_FLOW_ID-255..MAX_FLOW_ID: TCP source ports 65280..65535, ICMP identifiers 0x5EB8..0x5FB7
# (agent.trace.flow.ICMP_ID_BASE + flow id); traces use flow ids from 0 upward (a few dozen at most), so
# the two never meet. Each Pinger takes a free one per target and protocol (one-shot pingers of one
# target at once take different ones): at most len(LATENCY_FLOWS) pingers toward one target at a time.
LATENCY_FLOWS = range(MAX_FLOW_ID - 255, MAX_FLOW_ID + 1)
ANSWERS = (ReplyKind.ECHO_REPLY, ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST)
LOOK_SLACK_S = 0.01  # lazy reads look for an answer this long after the last RTT and a half
MAX_IDLE_FLOWS = 4096  # flows kept (their packet builders) for targets probed again; a census has 1,024

PingDone = Callable[[PingResult], None]
"""Called once with a probe's outcome: the RTT and reply TTL, or a loss (a timeout is a result)."""


class _Probe:
    """One probe: what it is, who waits for it, when it left (monotonic and wall clock). A plain slotted
    class: a dataclass compiles its methods at every start, and `nkprobe trace` imports this module."""

    __slots__ = ("done", "protocol", "queued", "sent_at", "sent_wall", "target", "timeout_s", "timer")

    def __init__(self, target: str, protocol: Protocol, done: PingDone, timeout_s: float) -> None:
        self.target = target
        self.protocol = protocol
        self.done = done
        self.timeout_s = timeout_s
        self.sent_at = 0.0
        self.sent_wall = 0.0
        self.timer: asyncio.TimerHandle | None = None  # eager reads: its timeout
        self.queued: QueuedSend | None = None


def result_of(reply: ParsedReply, probe: _Probe, rx: float, read_at: float) -> PingResult:
    """What an answer received at `rx` (monotonic; read at `read_at`) says of `probe`."""
    target, protocol = probe.target, probe.protocol
    if reply.kind not in ANSWERS:
        code = reply.icmp_code if reply.icmp_code is not None else -1
        unreachable = reply.kind is ReplyKind.UNREACHABLE
        err = UNREACHABLE_ERR.get(code, str(code)) if unreachable else reply.kind.value
        return PingResult(target, protocol, probe.sent_wall, None, extra={"err": err, "from": reply.src})
    extra = {"flags": "SA" if reply.kind is ReplyKind.TCP_SYNACK else "R"} if protocol is Protocol.TCP else {}
    rtt = receive_time(rx, probe.sent_at, read_at) - probe.sent_at
    return PingResult(
        target, protocol, probe.sent_wall, max(0.0, rtt), reply_ttl=reply.reply_ttl, extra=extra
    )


class _Flow:
    """One target's and protocol's flow: its packet builder, its next identity, its probes in flight."""

    __slots__ = ("builder", "key", "next_ident", "out", "rtt")

    def __init__(
        self, key: tuple[Protocol, str, tuple[int, int]], builder: ProbeBuilder, next_ident: int
    ) -> None:
        self.key = key
        self.builder = builder
        self.next_ident = next_ident
        self.out: dict[int, _Probe] = {}  # probes in flight by identity
        self.rtt: float | None = None  # the last answer's: when its next is due (lazy reads)


class Pinger:
    """Latency probes over `engine`: `start(...)` sends one (as soon as the budget allows; before any
    trace packet) and calls `done` with its outcome, from the reply's or the timeout's callback.

    `lazy`: answers are not read as they arrive but when they are expected (the flow's last RTT and a
    half again, or the timeout), all of a volley's at one wake-up; the kernel's receive stamps keep the
    RTT exact (agent.net.engine). An answer read after the timeout that came in after it is a loss, as it
    would have been had it been read at once. (Reading them at the next volley's wake-up instead saved
    one wake-up an interval but no measurable CPU: a wake-up 40-60 ms after the volley's finds the
    caches warm (bench/RESULTS.md, "Footprint"). It showed every result up to an interval later. Not
    kept.)"""

    def __init__(self, engine: ProbeEngine, *, ttl: int = 64, lazy: bool = False) -> None:
        """Made on the running event loop, whose timers it sets (one asyncio.get_running_loop() per
        probe was a getpid system call each, in CPython 3.11's C accelerator)."""
        self._loop = asyncio.get_running_loop()
        self.engine = engine
        self.ttl = ttl
        self.lazy = lazy
        self._flows: dict[tuple[Protocol, str, int | None], _Flow] = {}
        self._sent: list[tuple[_Flow, int]] = []  # lazy: probes in flight, looked at by `_look`
        self._look_timer: asyncio.TimerHandle | None = None
        self._due = -math.inf  # lazy: the latest expected answer of the probes in flight
        self._deadline = math.inf  # their first timeout; the timer looks at the earlier of the two
        self._arming = False  # `_set_timer` is due

    def start(
        self, target: str, protocol: Protocol, port: int | None, timeout_s: float, done: PingDone
    ) -> None:
        """Probe `target` once. Raises (nothing sent) if `target` is outside the engine's allowlist
        (NotAllowedError) or every latency flow toward it is taken (UsageError)."""
        flow = self._flows.get((protocol, target, port))
        if flow is None:
            flow = self._new_flow(protocol, target, port)
        if not flow.out:  # the first probe in flight: answers to this flow are ours from now on
            if self.engine.in_use(flow.key):
                flow = self._new_flow(protocol, target, port)
            self.engine.register(
                flow.key,
                lambda reply, rx, read_at: self._answer(flow, reply, rx, read_at),
                eager=not self.lazy,
            )
        ident = flow.next_ident
        while ident in flow.out:  # 65,535 identities: only a flood of lost probes could wrap into one
            ident = ident % 0xFFFF + 1
        flow.next_ident = ident % 0xFFFF + 1
        probe = _Probe(target, protocol, done, timeout_s)
        flow.out[ident] = probe

        def on_sent(sent_at: float) -> None:
            probe.queued = None
            probe.sent_at, probe.sent_wall = sent_at, time.time()
            # (engine and loop read the same monotonic clock)
            if not self.lazy:
                probe.timer = self._loop.call_at(sent_at + timeout_s, self._expire, flow, ident)
                return
            wait = timeout_s if flow.rtt is None else min(timeout_s, flow.rtt * 1.5 + LOOK_SLACK_S)
            self._sent.append((flow, ident))
            self._arm(sent_at + wait, sent_at + timeout_s)

        try:
            probe.queued = self.engine.send_soon(
                flow.builder.build(self.ttl, ident), target, protocol.value, on_sent
            )
        except BaseException:
            self._finish(flow, ident)
            raise

    def close(self) -> None:
        """Give up every probe in flight (none of their `done` is called)."""
        if self._look_timer is not None:
            self._look_timer.cancel()
            self._look_timer = None
        self._sent.clear()
        self._due, self._deadline = -math.inf, math.inf
        for flow in self._flows.values():
            for ident in list(flow.out):
                probe = self._finish(flow, ident)
                if probe is not None and probe.queued is not None:
                    self.engine.cancel_queued(probe.queued)
        self._flows.clear()

    # -- flows ------------------------------------------------------------------------------------------

    def _new_flow(self, protocol: Protocol, target: str, port: int | None) -> _Flow:
        src = None if protocol is Protocol.ICMP else self.engine.source_for(target)
        start = random.randrange(len(LATENCY_FLOWS))
        for i in range(len(LATENCY_FLOWS)):
            spec = flow_spec(
                protocol, target, LATENCY_FLOWS[(start + i) % len(LATENCY_FLOWS)], src=src, port=port
            )
            key = (protocol, target, (spec.sport, spec.dport))
            if not self.engine.in_use(key):
                if len(self._flows) >= MAX_IDLE_FLOWS:
                    self._forget_idle()
                flow = self._flows[(protocol, target, port)] = _Flow(
                    key, ProbeBuilder(spec), random.randrange(1, 0x10000)
                )
                return flow
        raise UsageError(
            f"more than {len(LATENCY_FLOWS)} {protocol.value} latency probes in flight toward {target}; "
            "send fewer at once (a longer interval or a shorter timeout)"
        )

    def _forget_idle(self) -> None:
        for k in [k for k, f in self._flows.items() if not f.out]:
            del self._flows[k]

    def _finish(self, flow: _Flow, ident: int) -> _Probe | None:
        probe = flow.out.pop(ident, None)
        if probe is not None and probe.timer is not None:
            probe.timer.cancel()
        if not flow.out:
            self.engine.unregister(flow.key)
        return probe

    # -- outcomes ---------------------------------------------------------------------------------------

    def _answer(self, flow: _Flow, reply: ParsedReply, rx: float, read_at: float) -> None:
        probe = flow.out.get(reply.ident)
        if probe is None or probe.queued is not None:
            return  # a late answer to a probe that timed out, or not to one of ours
        result = result_of(reply, probe, rx, read_at)
        if result.rtt_s is not None and result.rtt_s > probe.timeout_s:
            return  # read late, but it came in after the timeout: a loss (`_look`)
        self._finish(flow, reply.ident)
        if result.rtt_s is not None:
            flow.rtt = result.rtt_s
        probe.done(result)

    # -- lazy reads -------------------------------------------------------------------------------------

    def _arm(self, due: float, deadline: float) -> None:
        """Account for a probe in flight whose answer is due at `due` and lost at `deadline`. One timer
        for every probe in flight, at the latest time one of them is due but no later than the first
        timeout: a volley's answers (ICMP and TCP, near and far targets) are read at one wake-up, not one
        each. Set once the volley is out (call_soon), not once per probe."""
        self._due = max(self._due, due)
        self._deadline = min(self._deadline, deadline)
        if not self._arming:
            self._arming = True
            self._loop.call_soon(self._set_timer)

    def _set_timer(self) -> None:
        self._arming = False
        if self._look_timer is not None:
            self._look_timer.cancel()
            self._look_timer = None
        if self._sent:
            self._look_timer = self._loop.call_at(min(self._due, self._deadline), self._look)

    def _look(self) -> None:
        """Read what came, then call the probes whose timeout passed lost; look again at the others'
        timeout (nothing more is expected of them before)."""
        if self._look_timer is not None:
            self._look_timer.cancel()
            self._look_timer = None
        # Taken first: the outcomes' callbacks may start new probes (and `_arm` them) meanwhile.
        sent, self._sent = self._sent, []
        self._due, self._deadline = -math.inf, math.inf
        self.engine.poll()
        now = self.engine.now()
        for flow, ident in sent:
            probe = flow.out.get(ident)
            if probe is None:
                continue  # answered
            deadline = probe.sent_at + probe.timeout_s
            if deadline <= now:
                self._expire(flow, ident)
                continue
            self._sent.append((flow, ident))
            self._arm(deadline, deadline)

    def _expire(self, flow: _Flow, ident: int) -> None:
        probe = self._finish(flow, ident)
        if probe is not None:
            probe.done(PingResult(probe.target, probe.protocol, probe.sent_wall, None))


async def latency_probe(engine: ProbeEngine, spec: ProbeSpec) -> PingResult:
    """One latency probe of `spec` (target, protocol, port, ttl, timeout_s), awaited."""
    answer: asyncio.Future[PingResult] = asyncio.get_running_loop().create_future()

    def done(result: PingResult) -> None:
        if not answer.done():
            answer.set_result(result)

    pinger = Pinger(engine, ttl=spec.ttl)
    pinger.start(spec.target, spec.protocol, spec.port, spec.timeout_s, done)
    try:
        return await answer
    finally:
        pinger.close()
