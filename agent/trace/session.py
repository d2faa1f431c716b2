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
at TTL d, no new TTL is opened, silent TTLs below d still get their retries, and the trace ends when each
of them has answered or been given up, or `grace_s` after d answered, whichever is first; hops beyond d
are dropped from the result.

How long a silent probe is waited for (`silent_wait`), traceroute(8)'s "-w MAX,HERE,NEAR" rule: a probe
at TTL t is given up `near_factor` x the RTT of the nearest later TTL that has answered (its first
answer), bounded by `silent_min_s` and `silent_max_s` (traceroute's NEAR, default 10 there). That
later hop is about as far away as the silent one on a real path (the RTT grows along it), so its RTT
is the best evidence of how long an answer from t could take; a router that has not answered in a few of those
round trips rarely does, and the retry catches one that is merely slow (its late answer to the first
probe still counts while the retry is out). With no later answer yet, the wait is `timeout_s`.
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import NamedTuple

from agent.model import Hop, Path, Protocol, Reply, ReplyKind, record
from agent.packets.build import FlowSpec, builder_for
from agent.packets.parse import ParsedReply
from agent.trace.flow import flow_spec, ident_sequence
from agent.trace.settings import TraceSettings

REACHED_KINDS = frozenset({ReplyKind.ECHO_REPLY, ReplyKind.TCP_SYNACK, ReplyKind.TCP_RST})
# From the target itself, port unreachable (the normal end of a UDP trace) and protocol unreachable
# mean the probe arrived (RFC 1122 section 3.2.2.1).
REACHED_UNREACH_CODES = frozenset({2, 3})


@record(slots=True)
class TraceParams(TraceSettings):
    """Everything one Paris traceroute session needs: the flow it probes and its `TraceSettings`
    (agent.trace.settings, the one place of their defaults and checks)."""

    target: str
    protocol: Protocol = Protocol.TCP
    flow_id: int = 0  # the Paris id: selects the source port / ICMP identifier (agent.trace.flow)
    port: int | None = None  # UDP/TCP destination port; None: agent.trace.flow.DEFAULT_PORT
    src: str | None = None  # required for UDP and TCP (pseudo-header checksum); resolve it by route lookup


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


class SessionStats:
    """Counters by reason, for logs and metrics: a lost or odd reply is counted, never raised.

    A plain slotted class like the session's own records below (a dataclass compiles its methods at
    every start; these counters are never compared or replaced)."""

    __slots__ = ("after_done", "checksum_mismatch", "duplicates", "late", "replies", "sent", "unknown_ident")

    def __init__(self) -> None:
        self.sent = 0
        self.replies = 0
        self.duplicates = 0  # a second reply to one probe
        self.late = 0  # replies after the probe's timeout (still recorded)
        self.after_done = 0  # replies after the session finished (ignored)
        self.unknown_ident = 0  # the flow is ours but no sent probe has this identity (stale or forged)
        self.checksum_mismatch = 0  # the quoted checksum differs from ours: a middlebox rewrote the flow

    def __repr__(self) -> str:
        return "SessionStats(" + ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__) + ")"


# The two records of a session's own state are plain slotted classes: a dataclass buys them nothing
# they use (never compared, printed or replaced) and compiles its methods at every start, 0.6 ms of
# `nkprobe trace`'s start-up (bench/startup.py).
class _ProbeState:
    """One probe of the session: sent when, and answered or timed out yet."""

    __slots__ = ("answered", "probe", "sent_at", "timed_out")

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.sent_at: float | None = None
        self.answered = False
        self.timed_out = False


class _HopState:
    """One TTL of the session: its replies and probes."""

    __slots__ = ("attempts_planned", "final_silent", "in_flight", "replies", "sent")

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.sent = 0
        self.attempts_planned = 0  # highest attempt queued or sent, + 1
        self.in_flight = 0
        self.final_silent = False


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
        # TTLs that answered, sorted, and the RTT of each one's first answer: the evidence of the
        # silent-hop rule (silent_wait). A few dozen entries at most.
        self._answered: list[int] = []
        self._first_rtt: dict[int, float] = {}
        # Sent, neither answered nor timed out (at most `window` entries: scanned whole, since each
        # probe's deadline depends on its TTL).
        self._flying: dict[int, _ProbeState] = {}
        self._now = -math.inf  # the latest time the driver passed in (wants_to_send has no argument)
        self._frontier_sent_at: float | None = None  # when the deepest TTL opened so far left
        self._stretch_base = 0  # the deepest TTL opened when everything out had gone silent
        self._end_ttl: int | None = None
        self._end_reason = ""
        self._end_at: float | None = None
        self._done = False
        self._stop_reason = ""
        self._first_sent: float | None = None
        self._last_event: float | None = None
        self._rewrite_hop: int | None = None  # lowest TTL whose reply quoted a rewritten checksum

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
        if self._done or len(self._flying) >= self.params.window or self._gap():
            return False
        return bool(self._queue) or (self._end_ttl is None and self._may_open_ttl(self._now))

    def next_probes(self, now: float) -> list[Probe]:
        """The probes to send now, lowest TTL first; report each one sent with `sent`. Expires what has
        timed out by `now` first, as `on_timer` does (so retries that became due are among them)."""
        self._now = max(self._now, now)
        self._expire(now)
        room = self.params.window - len(self._flying)
        if self._done or room <= 0 or self._gap():
            return []
        if self._end_ttl is None:  # once the end is known only retries below it go (queue pruned)
            while len(self._queue) < room and self._may_open_ttl(now):
                self._enqueue(self._next_ttl, 0)
                self._next_ttl += 1
                self._frontier_sent_at = None
        return [self._plan(ttl, attempt) for ttl, attempt in self._queue[:room]]

    def sent(self, probe: Probe, now: float) -> None:
        """Record that `probe` left at `now` (the driver's real send time)."""
        state = self._probes.get(probe.ident)
        if state is None or state.probe is not probe or state.sent_at is not None:
            return  # not ours, or reported twice
        state.sent_at = now
        self._now = max(self._now, now)
        if probe.attempt == 0 and probe.ttl == self._next_ttl - 1:
            self._frontier_sent_at = now
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
        self._now = max(self._now, now)
        # No _expire(now) here: a reply that races its own timeout (the driver's timer has not run yet)
        # counts as on time; expiring first could end the session under the reply's feet.
        if reply.quoted_checksum is not None and reply.quoted_checksum != self._builder.checksum:
            # A NAT that changed the source port or ICMP identifier (and mapped the quoted one back but
            # not the quoted checksum, RFC 5508 section 3.6): the flow beyond it is not the one we chose.
            self.stats.checksum_mismatch += 1
            if self._rewrite_hop is None or state.probe.ttl < self._rewrite_hop:
                self._rewrite_hop = state.probe.ttl
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
        ttl = probe.ttl
        self._max_answered = max(self._max_answered, ttl)
        rtt = now - state.sent_at
        if ttl not in self._first_rtt:
            self._first_rtt[ttl] = rtt if rtt > 0.0 else 0.0
            bisect.insort(self._answered, ttl)
        hop.replies.append(
            Reply(
                reply.src, rtt if rtt > 0.0 else 0.0, reply.kind, reply.reply_ttl, reply.icmp_type,
                reply.icmp_code, reply.quoted_ttl, reply.size, reply.mpls,
            )
        )  # fmt: skip
        if self._queue:
            self._drop_queued(probe.ttl)  # an answered hop needs no retry
        end = self._end_kind(reply) if reply.kind is not ReplyKind.TIME_EXCEEDED else ""
        if end and (self._end_ttl is None or ttl < self._end_ttl):
            self._end_ttl, self._end_reason = ttl, end
            if self._end_at is None:
                self._end_at = now
            for item in self._queue:  # nothing at or beyond the end is worth sending now
                if item[0] >= ttl:
                    self._forget_plan(item)
            self._queue = [item for item in self._queue if item[0] < ttl]
        self._last_event = now
        self._check_done(now)
        return True

    def next_deadline(self) -> float | None:
        """When `on_timer` must run next (a probe timeout or the end of the grace), or None."""
        if self._done:
            return None
        deadline = None
        for state in self._flying.values():
            at = self._deadline(state)
            if deadline is None or at < deadline:
                deadline = at
        if self._end_at is not None:
            end = self._end_at + self.params.grace_s
            if deadline is None or end < deadline:
                deadline = end
        elif len(self._flying) < self.params.window and self._may_open_ttl():
            paced = self._paced_until()  # would open a TTL but for the pacing: wake when it may
            if paced is not None and paced > self._now and (deadline is None or paced < deadline):
                deadline = paced
        return deadline

    def silent_wait(self, ttl: int) -> float:
        """How long a probe at `ttl` is waited for (the module docstring's silent-hop rule).

        >>> s = Session(TraceParams("192.0.2.1", Protocol.ICMP, timeout_s=2.0))
        >>> s.silent_wait(4)  # nothing later has answered: the plain timeout
        2.0
        >>> s._answered, s._first_rtt = [5], {5: 0.118}
        >>> round(s.silent_wait(4), 3)  # 3 x the RTT of hop 5
        0.354
        >>> s._answered, s._first_rtt = [5], {5: 0.0002}
        >>> s.silent_wait(4)  # a near hop: the floor
        0.05
        """
        params = self.params
        answered = self._answered
        if ttl in self._first_rtt:
            return 0.0  # answered already (a retry still out): nothing left to wait for
        index = bisect.bisect_right(answered, ttl)
        if index == len(answered):
            return params.timeout_s
        wait = params.near_factor * self._first_rtt[answered[index]]
        return min(params.silent_max_s, max(params.silent_min_s, wait))

    def _deadline(self, state: _ProbeState) -> float:
        assert state.sent_at is not None
        return state.sent_at + self.silent_wait(state.probe.ttl)

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
            rewritten_replies=self.stats.checksum_mismatch,
            rewrite_hop=self._rewrite_hop,
        )

    # -- internals -----------------------------------------------------------------------------------

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
        expired = []
        for state in self._flying.values():
            deadline = self._deadline(state)
            if now >= deadline:
                expired.append((state, deadline))
        for state, deadline in expired:
            state.timed_out = True
            del self._flying[state.probe.ident]
            ttl, attempt = state.probe.ttl, state.probe.attempt
            hop = self._hops[ttl]
            hop.in_flight -= 1
            self._last_event = max(self._last_event or now, deadline)
            if hop.replies:
                continue
            if attempt < self.params.retries and hop.attempts_planned <= attempt + 1:
                self._enqueue(ttl, attempt + 1)
            elif hop.in_flight == 0 and hop.attempts_planned == attempt + 1:
                hop.final_silent = True
        self._check_done(now)

    def _paced_until(self) -> float | None:
        """While the deepest TTL sent may still be answered by the destination itself, when opening
        deeper TTLs is worth it: `pace` x the RTT of the deepest hop that has answered. Its answer is
        due at about that RTT (the RTT grows along the path); a deeper probe sent before then is
        wasted if it is the destination (on a short path every probe past the destination is; the
        lab's paths cost 2 x their hop count without pacing). None: no reason to wait."""
        sent_at = self._frontier_sent_at
        if sent_at is None or self._max_answered >= self._next_ttl - 1:
            return None
        return sent_at + self.params.pace * self._first_rtt.get(self._max_answered, 0.0)

    def _may_open_ttl(self, now: float = math.inf) -> bool:
        lookahead = self.params.lookahead
        if self._next_ttl > self.params.max_hops:
            return False
        if lookahead is not None:
            # A silent stretch longer than the lookahead: once everything out has been given up, the
            # lookahead counts from the deepest TTL opened (the gap rule needs gap_limit silent TTLs).
            if not self._flying and not self._queue:
                self._stretch_base = self._next_ttl - 1
            if self._next_ttl > max(self._max_answered, self._stretch_base) + lookahead:
                return False
        paced = self._paced_until()
        return paced is None or now >= paced

    def _gap(self) -> bool:
        """A run of `gap_limit` hops beyond the last answering hop has gone silent after every retry."""
        first = self._max_answered + 1
        hops = self._hops
        for ttl in range(first, first + self.params.gap_limit):
            hop = hops.get(ttl)
            if hop is None or not hop.final_silent:
                return False  # usually at once: the hop after the last answer is rarely given up yet
        return True

    def _check_done(self, now: float) -> None:
        if self._done:
            return
        if self._end_ttl is not None and self._end_at is not None:
            # The queue holds only retries below the end now; a probe of a TTL that answered meanwhile
            # is not worth waiting for.
            end_ttl, answered = self._end_ttl, self._first_rtt
            waiting = bool(self._queue)
            for state in self._flying.values():
                ttl = state.probe.ttl
                if ttl < end_ttl and ttl not in answered:
                    waiting = True
                    break
            if not waiting or now >= self._end_at + self.params.grace_s:
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
