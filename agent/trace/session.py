"""The sans-I/O Paris traceroute session: one target, one protocol, one flow identifier.

No sockets and no clock: the driver (agent.probers) passes `now` (monotonic seconds) into every call and
moves the bytes. The protocol of the conversation:

1. ``probes = session.next_probes(now)``: the probes the session wants on the wire now (lowest TTL
   first, at most `window` in flight). Nothing changes until the driver reports a send, so a driver whose
   packet budget refuses some simply sends fewer; the rest come back from the next `next_probes` call.
2. ``session.sent(probe, now)`` for each probe actually sent, with the real send time.
3. ``session.on_reply(parsed, now)`` for each parsed reply whose `match_key(...).session_key` equals
   `session.key` (`agent.trace.registry.ReplyTable` does that lookup); `now` is the receive time
   (kernel timestamp on the same clock as the send times).
4. ``session.on_timer(now)`` once `now >= session.next_deadline()`.
5. Repeat from 1 until `session.done`; then `session.result()` is the `agent.model.Path`.

Stop rules: the destination answered (echo reply, SYN-ACK, RST, or port/protocol unreachable from the
target), an ICMP unreachable with any other code (!N !H !P !X ...), a run of `gap_limit` silent hops
beyond the last hop that answered, or `max_hops`. Once the destination (or an unreachable) has answered
at TTL d, nothing new is sent and earlier silent probes get at most `grace_s` more; hops beyond d are
dropped from the result. A probe without a reply after `timeout_s` is retried `retries` times.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import NamedTuple

from agent.model import Hop, Path, Protocol, Reply, ReplyKind
from agent.packets.build import FlowSpec, builder_for
from agent.packets.parse import ParsedReply
from agent.trace.flow import flow_spec, ident_sequence

REACHED_KINDS = frozenset({ReplyKind.ECHO_REPLY, ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST})
# From the target itself, port unreachable (the normal end of a UDP trace) and protocol unreachable
# mean the probe arrived (RFC 1122 section 3.2.2.1).
REACHED_UNREACH_CODES = frozenset({2, 3})


@dataclass(frozen=True, slots=True)
class TraceParams:
    """Everything one Paris traceroute session needs. Durations in seconds."""

    target: str
    protocol: Protocol = Protocol.TCP
    flow_id: int = 0  # the Paris id: selects the source port / ICMP identifier (agent.trace.flow)
    port: int | None = None  # UDP/TCP destination port; None: agent.trace.flow.DEFAULT_PORT
    src: str | None = None  # required for UDP and TCP (pseudo-header checksum); resolve it by route lookup
    max_hops: int = 32
    timeout_s: float = 2.0
    grace_s: float = 0.5
    # Adaptive grace (0: off): silent probes below the destination get min(grace_s, max(grace_min_s,
    # grace_rtt_factor x the slowest RTT of this trace)), like traceroute(8)'s "-w MAX,HERE,NEAR" waits
    # scaled by the RTTs seen. A router that has not answered in 3 round trips rarely answers at all.
    grace_rtt_factor: float = 0.0
    grace_min_s: float = 0.05
    retries: int = 1
    gap_limit: int = 5
    window: int = 16  # most probes in flight at once
    # Highest new TTL = last answering TTL + lookahead (None: the window alone limits). Bounds the probes
    # wasted beyond the destination (each costs packet budget, and a UDP target's port unreachables are
    # rate-limited by its kernel, icmp_ratelimit, so a burst past it can hide the real answer).
    lookahead: int | None = None
    packet_size: int = 0  # total IPv4 length; 0: agent.packets.build.DEFAULT_SIZE

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.max_hops <= 255:
            problems.append(f"max_hops must be 1..255, got {self.max_hops}")
        if self.timeout_s <= 0 or self.grace_s < 0:
            problems.append("timeout_s must be > 0 and grace_s >= 0")
        if self.retries < 0 or self.gap_limit < 1 or self.window < 1:
            problems.append("retries must be >= 0, gap_limit and window >= 1")
        if self.lookahead is not None and self.lookahead < self.gap_limit:
            problems.append(f"lookahead must be >= gap_limit ({self.gap_limit}) or the gap rule cannot fire")
        if problems:
            raise ValueError("; ".join(problems))


class Probe(NamedTuple):
    """One probe to put on the wire: send `data` (a whole IPv4 packet) to (`dst`, 0) on a raw socket.

    A NamedTuple rather than a frozen dataclass: as immutable, and made in a third of the time (a frozen
    dataclass sets each field through object.__setattr__), once per probe."""

    ttl: int
    attempt: int  # 0 for the first probe of a TTL, 1.. for retries
    ident: int  # identity inside the flow (agent.packets.build)
    dst: str
    protocol: Protocol
    data: bytes

    def __repr__(self) -> str:  # without the packet's bytes, like the dataclass it was (field repr=False)
        return (
            f"Probe(ttl={self.ttl}, attempt={self.attempt}, ident={self.ident}, dst={self.dst!r}, "
            f"protocol={self.protocol!s}, {len(self.data)} bytes)"
        )


@dataclass(slots=True)
class SessionStats:
    """Counters by reason, for logs and metrics (DESIGN.md idea 7)."""

    sent: int = 0
    replies: int = 0
    duplicates: int = 0  # a second reply to one probe
    late: int = 0  # replies after the probe's timeout (still recorded)
    after_done: int = 0  # replies after the session finished (ignored)
    unknown_ident: int = 0  # the flow is ours but no sent probe has this identity (stale or forged)
    checksum_mismatch: int = 0  # the quoted checksum differs from ours: a middlebox rewrote the flow


@dataclass(slots=True)
class _ProbeState:
    probe: Probe
    sent_at: float | None = None
    answered: bool = False
    timed_out: bool = False


@dataclass(slots=True)
class _HopState:
    replies: list[Reply] = field(default_factory=list)
    sent: int = 0
    attempts_planned: int = 0  # highest attempt queued or sent, + 1
    in_flight: int = 0
    final_silent: bool = False


@functools.lru_cache(maxsize=1024)  # a flow's every round has equal params: validate its FlowSpec once
def flow_of(params: TraceParams) -> FlowSpec:
    """The constant fields of the flow a session with `params` probes."""
    return flow_spec(
        params.protocol, params.target, params.flow_id, src=params.src, port=params.port,
        size=params.packet_size,
    )  # fmt: skip


def session_key(flow: FlowSpec) -> tuple[Protocol, str, tuple[int, int]]:
    """The `MatchKey.session_key` of every reply to a probe of `flow`."""
    return (flow.protocol, flow.dst, (flow.sport, flow.dport))


class Session:
    """One Paris traceroute (see the module docstring for the driver protocol)."""

    def __init__(self, params: TraceParams, *, started_at: float = 0.0, ident_base: int = 0) -> None:
        """`started_at` is the wall-clock start (Path.started_at). Probe identities are
        `ident_sequence(ident_base, 0, 1, ...)`: start a session right after the previous session of
        the same flow ended (`ident_base=previous.next_ident_base`) so that a late reply to the previous
        one never matches a probe of this one; the driver keeps that per flow."""
        self.params = params
        self.flow: FlowSpec = flow_of(params)
        self._builder = builder_for(self.flow)
        self.started_at = started_at
        self.stats = SessionStats()
        self._ident_base = ident_base
        self._ident_count = 0
        self._probes: dict[int, _ProbeState] = {}
        self._planned: dict[tuple[int, int], Probe] = {}
        self._queue: list[tuple[int, int]] = []  # (ttl, attempt) wanted on the wire, sorted
        self._hops: dict[int, _HopState] = {}
        self._next_ttl = 1
        self._max_answered = 0  # highest TTL with a reply
        # Sent, neither answered nor timed out, in the order sent: with send times that never go back
        # (a monotonic clock) the first entry is the next to time out, so expiry stops at the first
        # probe still in time and the next deadline is the first entry's; `_sends_ordered` turns false,
        # and both scan everything, if a driver ever reports an earlier time than the last.
        self._flying: dict[int, _ProbeState] = {}
        self._sends_ordered = True
        self._last_sent_at = float("-inf")
        self._end_ttl: int | None = None
        self._end_reason = ""
        self._end_at: float | None = None
        self._max_rtt = 0.0
        self._done = False
        self._stop_reason = ""
        self._first_sent: float | None = None
        self._last_event: float | None = None

    # -- the driver's interface ---------------------------------------------------------------------

    @property
    def key(self) -> tuple[Protocol, str, tuple[int, int]]:
        """The `MatchKey.session_key` of every reply that belongs to this session."""
        return session_key(self.flow)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def next_ident_base(self) -> int:
        """The `ident_base` for the next session of this flow: its identities follow every identity this
        one has used (wrapping after 65535), so the two ranges never overlap."""
        return (self._ident_base + self._ident_count) % 0xFFFF

    @property
    def wants_to_send(self) -> bool:
        """True if `next_probes` would return something now (the window has room and work remains)."""
        return (
            not self._done
            and not self._stopping()
            and len(self._flying) < self.params.window
            and (bool(self._queue) or self._may_open_ttl())
        )

    def next_probes(self, now: float) -> list[Probe]:
        """The probes to send now, lowest TTL first; report each one sent with `sent`. Expires what has
        timed out by `now` first, as `on_timer` does (so retries that became due are among them)."""
        self._expire(now)
        if self._done or self._stopping():
            return []
        room = self.params.window - len(self._flying)
        while len(self._queue) < room and self._may_open_ttl():
            self._enqueue(self._next_ttl, 0)
            self._next_ttl += 1
        return [self._plan(ttl, attempt) for ttl, attempt in self._queue[: max(room, 0)]]

    def sent(self, probe: Probe, now: float) -> None:
        """Record that `probe` left at `now` (the driver's real send time)."""
        state = self._probes.get(probe.ident)
        if state is None or state.probe is not probe or state.sent_at is not None:
            return  # not ours, or reported twice
        state.sent_at = now
        if now < self._last_sent_at:
            self._sends_ordered = False
        self._last_sent_at = now
        item = (probe.ttl, probe.attempt)
        queue = self._queue
        if queue and queue[0] == item:
            del queue[0]  # the usual case: probes are sent in the order next_probes gave them
        else:
            index = bisect.bisect_left(queue, item)
            if index < len(queue) and queue[index] == item:
                del queue[index]
        self._planned.pop(item, None)
        hop = self._hops[probe.ttl]
        hop.sent += 1
        hop.in_flight += 1
        self._flying[probe.ident] = state
        self.stats.sent += 1
        if self._first_sent is None:
            self._first_sent = now
        self._last_event = now

    def on_reply(self, reply: ParsedReply, now: float, *, read_at: float | None = None) -> bool:
        """Record a reply received at `now`; True if it answers a probe of this session (even a duplicate
        or a late one). The caller routed it here by its session key (`ReplyTable`), so only the
        identity is checked. A `now` earlier than the probe's send is a kernel stamp spoilt by a wall-clock
        step (agent.net.clock): `read_at`, when the driver read the packet, is used instead."""
        state = self._probes.get(reply.ident)
        if state is None or state.sent_at is None:
            self.stats.unknown_ident += 1
            return False
        if self._done:
            self.stats.after_done += 1
            return True
        if state.answered:
            self.stats.duplicates += 1
            return True
        # No _expire(now) here: a reply that races its own timeout (the driver's timer has not run yet)
        # counts as on time; expiring first could end the session under the reply's feet.
        if reply.quoted_checksum is not None and reply.quoted_checksum != self._builder.checksum:
            self.stats.checksum_mismatch += 1
        if now < state.sent_at and read_at is not None:
            now = read_at  # agent.net.clock.receive_time: the stamp predates the send
        probe = state.probe
        hop = self._hops[probe.ttl]
        state.answered = True
        if state.timed_out:
            self.stats.late += 1
        else:
            hop.in_flight -= 1
            del self._flying[probe.ident]
        self.stats.replies += 1
        hop.final_silent = False
        self._max_answered = max(self._max_answered, probe.ttl)
        rtt = now - state.sent_at
        self._max_rtt = max(self._max_rtt, rtt)
        hop.replies.append(
            Reply(
                reply.src, rtt if rtt > 0.0 else 0.0, reply.kind, reply.reply_ttl, reply.icmp_type,
                reply.icmp_code, reply.quoted_ttl, reply.size, reply.mpls,
            )
        )  # fmt: skip
        if self._queue:
            self._drop_queued(probe.ttl)  # an answered hop needs no retry
        end = self._end_kind(reply) if reply.kind is not ReplyKind.TIME_EXCEEDED else ""
        if end and (self._end_ttl is None or probe.ttl < self._end_ttl):
            self._end_ttl, self._end_reason = probe.ttl, end
            if self._end_at is None:
                self._end_at = now
        self._last_event = now
        self._check_done(now)
        return True

    def next_deadline(self) -> float | None:
        """When `on_timer` must run next (a probe timeout or the end of the grace), or None."""
        if self._done:
            return None
        deadline = None
        if self._flying:
            if self._sends_ordered:
                first = next(iter(self._flying.values())).sent_at
            else:
                first = min(s.sent_at for s in self._flying.values() if s.sent_at is not None)
            if first is not None:
                deadline = first + self.params.timeout_s
        if self._end_at is not None:
            end = self._end_at + self._grace()
            if deadline is None or end < deadline:
                deadline = end
        return deadline

    def on_timer(self, now: float) -> None:
        """Expire timed-out probes (queueing retries) and apply the stop rules."""
        self._expire(now)

    def result(self) -> Path:
        """The path so far; complete once `done`. Hops beyond the destination's TTL are left out."""
        last = self._last_ttl()
        hops = tuple(
            Hop(ttl=ttl, replies=tuple(self._hops[ttl].replies) if ttl in self._hops else (),
                probes_sent=self._hops[ttl].sent if ttl in self._hops else 0)
            for ttl in range(1, last + 1)
        )  # fmt: skip
        duration = 0.0
        if self._first_sent is not None and self._last_event is not None:
            duration = self._last_event - self._first_sent
        return Path(
            target=self.params.target,
            protocol=self.params.protocol,
            flow_id=self.params.flow_id,
            hops=hops,
            reached=self._done and self._stop_reason == "reached",
            started_at=self.started_at,
            duration_s=duration,
            src=self.flow.src,
            dst_port=self.flow.dport if self.flow.protocol is not Protocol.ICMP else None,
            packet_size=self.flow.effective_size,
            stop_reason=self._stop_reason if self._done else "incomplete",
        )

    # -- internals -----------------------------------------------------------------------------------

    def _grace(self) -> float:
        factor = self.params.grace_rtt_factor
        if factor <= 0:
            return self.params.grace_s
        return min(self.params.grace_s, max(self.params.grace_min_s, factor * self._max_rtt))

    def _end_kind(self, reply: ParsedReply) -> str:
        if reply.kind in REACHED_KINDS:
            return "reached"
        if reply.kind is ReplyKind.UNREACHABLE:
            if reply.src == self.params.target and reply.icmp_code in REACHED_UNREACH_CODES:
                return "reached"
            return "unreachable"
        return ""

    def _enqueue(self, ttl: int, attempt: int) -> None:
        hop = self._hops.get(ttl)
        if hop is None:
            hop = self._hops[ttl] = _HopState()
        hop.attempts_planned = max(hop.attempts_planned, attempt + 1)
        item = (ttl, attempt)
        if not self._queue or self._queue[-1] < item:
            self._queue.append(item)  # the usual case: a new TTL, above everything queued
        else:
            bisect.insort(self._queue, item)

    def _drop_queued(self, ttl: int) -> None:
        kept = [item for item in self._queue if item[0] != ttl]
        for item in self._queue:
            if item[0] == ttl:
                self._forget_plan(item)
        self._queue = kept

    def _forget_plan(self, item: tuple[int, int]) -> None:
        probe = self._planned.pop(item, None)
        if probe is not None:
            self._probes.pop(probe.ident, None)

    def _plan(self, ttl: int, attempt: int) -> Probe:
        probe = self._planned.get((ttl, attempt))
        if probe is None:
            ident = ident_sequence(self._ident_base, self._ident_count)
            self._ident_count += 1
            probe = Probe(
                ttl, attempt, ident, self.flow.dst, self.flow.protocol, self._builder.build(ttl, ident)
            )
            self._planned[(ttl, attempt)] = probe
            self._probes[ident] = _ProbeState(probe)
        return probe

    def _expire(self, now: float) -> None:
        if self._done:
            return
        timeout = self.params.timeout_s
        expired = []
        for state in self._flying.values():
            if state.sent_at is None or now < state.sent_at + timeout:
                if self._sends_ordered:
                    break  # every later entry was sent later still
                continue
            expired.append(state)
        for state in expired:
            assert state.sent_at is not None
            state.timed_out = True
            del self._flying[state.probe.ident]
            ttl, attempt = state.probe.ttl, state.probe.attempt
            hop = self._hops[ttl]
            hop.in_flight -= 1
            self._last_event = max(self._last_event or now, state.sent_at + timeout)
            if hop.replies:
                continue
            if attempt < self.params.retries and hop.attempts_planned <= attempt + 1:
                self._enqueue(ttl, attempt + 1)
            elif hop.in_flight == 0 and hop.attempts_planned == attempt + 1:
                hop.final_silent = True
        self._check_done(now)

    def _may_open_ttl(self) -> bool:
        lookahead = self.params.lookahead
        if self._next_ttl > self.params.max_hops:
            return False
        return lookahead is None or self._next_ttl <= self._max_answered + lookahead

    def _gap(self) -> bool:
        """A run of `gap_limit` hops beyond the last answering hop has gone silent after every retry."""
        first = self._max_answered + 1
        hops = self._hops
        for ttl in range(first, first + self.params.gap_limit):
            hop = hops.get(ttl)
            if hop is None or not hop.final_silent:
                return False  # usually at once: the hop after the last answer is rarely given up yet
        return True

    def _stopping(self) -> bool:
        return self._end_ttl is not None or self._gap()

    def _check_done(self, now: float) -> None:
        if self._done:
            return
        if self._end_ttl is not None and self._end_at is not None:
            end_ttl = self._end_ttl
            waiting = False
            for state in self._flying.values():
                if state.probe.ttl < end_ttl:
                    waiting = True
                    break
            if not waiting or now >= self._end_at + self._grace():
                self._finish(self._end_reason, now)
            return
        if self._flying:
            return
        if self._gap():
            self._finish("gap", now)
        elif not self._queue and self._next_ttl > self.params.max_hops:
            self._finish("max_hops", now)

    def _finish(self, reason: str, now: float) -> None:
        self._done = True
        self._stop_reason = reason
        self._queue.clear()
        self._planned.clear()
        if self._first_sent is not None:
            self._last_event = max(self._last_event or now, now)

    def _last_ttl(self) -> int:
        if self._end_ttl is not None:
            return self._end_ttl
        probed = max(self._hops, default=0)
        if self._done and self._stop_reason == "gap":
            return min(self._max_answered + self.params.gap_limit, probed)
        return probed
