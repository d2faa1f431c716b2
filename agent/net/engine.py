"""The asyncio side of the probe sockets: one send path under the global budget, one receive path.

Every trace and ping of the process shares one `SocketSet`. Each answer is matched to its probe by what
it quotes (agent.packets.parse/match_key): the session key (protocol, destination, flow ports) picks the
session, which finds the probe by its identity. Sessions `register` their key for as long as they run
(the table is `agent.trace.registry.ReplyTable`, the code base's one dispatcher); answers for nobody
(other programs' traceroutes, late answers of finished sessions) are counted and dropped.

Receive times come from the kernel (SO_TIMESTAMPNS, see agent.net.clock), mapped onto the monotonic
clock that stamps sends, so the event loop's own latency does not enter the RTT. That lets the agent's
latency probes be read late and in batches: the sockets are on the event loop only while an eager
session (a trace, a one-shot ping) runs; otherwise the pinger reads them when it expects its answers
(`poll`). On a Pi, a wake-up of the Python event loop costs more than the packet it reads (issue 25: an
asyncio timer firing 10 times a second costs about 250 µs of CPU a firing on the 2-core test machine).

Latency probes before trace packets: traces take tokens with `try_send` whenever one is free, latency
probes wait for one in a queue (`send_soon`, `send`). With a dozen trace flows competing, a waiting probe
got a token only now and then and the latency series thinned to one probe in five seconds; so `try_send`
refuses while any latency probe waits (the trace driver retries a moment later), and probes keep their
interval when the budget is short while traces get the rest.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable

from agent.net import clock
from agent.net.allowlist import Allowlist
from agent.net.budget import Budget
from agent.net.netns import call_in_netns
from agent.net.sockets import (
    CMSG_SPACE,
    RECV_BUFSIZE,
    SocketSet,
    open_socket_set,
    parse_timestamp,
    source_address,
)
from agent.trace.registry import ReplyHandler, ReplyTable

SendHook = Callable[[str], None]
"""Called with the protocol name after every probe packet that left (metrics)."""

OnSent = Callable[[float], None]
"""Called with a queued probe's send time (monotonic) once it left (`ProbeEngine.send_soon`)."""

SendErrorHook = Callable[[str], None]
"""Called with the errno name ("ENETUNREACH", "EPERM"...) of every probe the kernel refused (metrics)."""

log = logging.getLogger("nkprobe.net")
SEND_ERROR_LOG_INTERVAL_S = 60.0  # at most one warning a minute: a missing route refuses every probe
QUEUE_SLACK_S = 0.005  # the send queue waits this long past its next token: a burst's come back together


class QueuedSend:
    """A latency probe waiting for a token of the budget (`ProbeEngine.send_soon`). A plain slotted
    class: a dataclass compiles its methods at every start (bench/startup.py)."""

    __slots__ = ("cancelled", "dst", "on_sent", "packet", "protocol")

    def __init__(self, packet: bytes, dst: str, protocol: str, on_sent: OnSent) -> None:
        self.packet = packet
        self.dst = dst
        self.protocol = protocol
        self.on_sent = on_sent
        self.cancelled = False


def open_engine(
    budget: Budget,
    netns: str | None = None,
    on_send: SendHook | None = None,
    on_send_error: SendErrorHook | None = None,
    *,
    allow: Allowlist,
) -> ProbeEngine:
    """The composition root's way in: sockets opened in `netns` (PrivilegeError without CAP_NET_RAW).

    `allow` (the destination prefixes) is required: the engine refuses to send anywhere else, and no
    caller can forget to say where that is."""
    sockets = call_in_netns(netns, open_socket_set)
    return ProbeEngine(
        sockets, budget, on_send=on_send, on_send_error=on_send_error, netns=netns, allow=allow
    )


class ProbeEngine:
    """Owns the socket set, the budget and the table of live sessions; see the module docstring."""

    def __init__(
        self,
        sockets: SocketSet,
        budget: Budget,
        *,
        now: Callable[[], float] = time.monotonic,
        on_send: SendHook | None = None,
        on_send_error: SendErrorHook | None = None,
        netns: str | None = None,
        allow: Allowlist | None = None,
    ) -> None:
        self.sockets = sockets
        self.netns = netns  # where the sockets live: route lookups must be made there too
        self._sources: dict[str, str] = {}
        self.budget = budget
        self.now = now
        self.on_send = on_send
        self.on_send_error = on_send_error
        # Safety in depth: callers check their targets against the allowlist, and with `allow` the
        # engine checks every packet again, so no caller bug can turn the agent into a scanner.
        self.allow = allow
        self._allowed: set[str] = set()  # addresses `allow` admitted: the hot path is one set lookup
        self._send_error_logged_at: float | None = None
        self._send_errors_unlogged = 0
        self.replies = ReplyTable()  # the live sessions' reply handlers
        self._eager: set[Hashable] = set()  # sessions whose answers are read as they arrive
        self._reading = False  # the receive sockets are on the loop (add_reader)
        self._ident_bases: dict[Hashable, int] = {}
        self._queue: deque[QueuedSend] = deque()  # latency probes waiting for a token, in order
        self._queue_timer: asyncio.TimerHandle | None = None
        self._waiting = 0  # queued probes not yet sent: `try_send` yields to them (module docstring)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sent: Counter[str] = Counter()  # packets sent by protocol
        self.send_errors: Counter[str] = Counter()  # by errno name
        self.received = 0

    # -- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> None:
        """Read the receive sockets from the running loop: at once while a session needs it (loop.add_reader),
        else when asked (`poll`)."""
        self._loop = asyncio.get_running_loop()
        self._attach_readers()

    def close(self) -> None:
        if self._queue_timer is not None:
            self._queue_timer.cancel()
            self._queue_timer = None
        self._eager.clear()
        self._attach_readers()
        self._loop = None
        self.sockets.close()

    def _attach_readers(self) -> None:
        """Readers on the loop while an eager session runs, or always without kernel receive stamps (a
        late read would lengthen the RTT); else nobody is woken per packet (module docstring)."""
        loop = self._loop
        want = loop is not None and (bool(self._eager) or not self.sockets.stamped)
        if want == self._reading or loop is None or loop.is_closed():
            return
        for sock in self.sockets.receivers():
            if want:
                loop.add_reader(sock.fileno(), self._drain, sock)
            else:
                loop.remove_reader(sock.fileno())
        self._reading = want

    def poll(self) -> None:
        """Read and dispatch every packet queued on the receive sockets now."""
        for sock in self.sockets.receivers():
            self._drain(sock)

    async def __aenter__(self) -> ProbeEngine:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- sessions ---------------------------------------------------------------------------------------

    def register(self, session_key: Hashable, handler: ReplyHandler, *, eager: bool = True) -> None:
        """Route answers whose `match_key(...).session_key` equals `session_key` to `handler`: as soon as
        they arrive if `eager`, else whenever the sockets are read (`poll`, or for an eager session)."""
        self.replies.register(session_key, handler)
        if eager:
            self._eager.add(session_key)
            if not self._reading:
                self._attach_readers()

    def unregister(self, session_key: Hashable) -> None:
        self.replies.unregister(session_key)
        if session_key in self._eager:
            self._eager.discard(session_key)
            if not self._eager:
                self._attach_readers()

    def in_use(self, session_key: Hashable) -> bool:
        return self.replies.in_use(session_key)

    def set_allowlist(self, allow: Allowlist) -> None:
        """Probe only inside `allow` from now on (a config reload): a narrower list refuses the very next
        packet to an address it no longer covers, even one a running trace planned before the reload."""
        self.allow = allow
        self._allowed.clear()

    def ident_base(self, session_key: Hashable) -> int:
        """Where the next session on `session_key` starts its probe identities: after the identities of
        the previous one (`idents_used`), so that its late replies cannot match the new session's probes
        (consecutive rounds of one flow share the key); random for a key's first session."""
        base = self._ident_bases.get(session_key)
        return random.randrange(0xFFFF) if base is None else base

    def idents_used(self, session_key: Hashable, next_base: int) -> None:
        """Record that the session on `session_key` used identities up to `next_base` (exclusive)."""
        if len(self._ident_bases) > 4096 and session_key not in self._ident_bases:
            self._ident_bases.clear()  # bounded: a few flows per target, a few dozen targets
        self._ident_bases[session_key] = next_base

    def source_for(self, dst: str) -> str:
        """The source address toward `dst` in the sockets' namespace (cached; no packet is sent)."""
        src = self._sources.get(dst)
        if src is None:
            src = call_in_netns(self.netns, lambda: source_address(dst))
            if len(self._sources) > 1024:  # bounded: the agent has a few dozen targets
                self._sources.clear()
            self._sources[dst] = src
        return src

    # -- sending ----------------------------------------------------------------------------------------

    def send_soon(self, packet: bytes, dst: str, protocol: str, on_sent: OnSent) -> QueuedSend | None:
        """Send one latency probe now if the budget has a token and no other waits, else queue it (first
        in, first out) and send it as soon as one is free; `on_sent` gets its send time (monotonic).

        No task or future per probe (issue 25: the agent's pings are most of its packets): the queue is
        drained by one timer. Returns the queue entry (`cancel_queued`) or None if it left at once. A
        packet the kernel refuses is still "sent" (`_send_now`). NotAllowedError, raised here, if `allow`
        refuses `dst` (nothing is sent or queued and no token spent)."""
        if self.allow is not None and dst not in self._allowed:
            self._admit(dst)
        if not self._queue and self.budget.wait(self.now()) <= 0.0:
            on_sent(self._send_now(packet, dst, protocol))
            return None
        entry = QueuedSend(packet, dst, protocol, on_sent)
        self._queue.append(entry)
        self._waiting += 1
        self._arm_queue()
        return entry

    def cancel_queued(self, entry: QueuedSend) -> None:
        """Take a queued probe back (its caller gave up); nothing is sent for it."""
        if not entry.cancelled:
            entry.cancelled = True
            self._waiting -= 1

    async def send(self, packet: bytes, dst: str, protocol: str) -> float:
        """`send_soon`, awaited: the send time. Cancelling it while queued takes the probe back."""
        loop = asyncio.get_running_loop()
        sent: asyncio.Future[float] = loop.create_future()

        def on_sent(at: float) -> None:
            if not sent.done():
                sent.set_result(at)

        entry = self.send_soon(packet, dst, protocol, on_sent)
        if entry is None:
            return sent.result()
        try:
            return await sent
        finally:
            self.cancel_queued(entry)

    def _arm_queue(self) -> None:
        """One timer for the whole queue, a moment after the budget's next token: the tokens of a burst
        come back a window after it, microseconds apart, and are spent at one wake-up rather than one
        each (a census drains 1,024 probes at max_pps: ten wake-ups a second became one)."""
        if self._queue_timer is not None or not self._queue:
            return
        loop = asyncio.get_running_loop()
        self._queue_timer = loop.call_later(self.budget.wait(self.now()) + QUEUE_SLACK_S, self._drain_queue)

    def _drain_queue(self) -> None:
        self._queue_timer = None
        queue = self._queue
        while queue:
            entry = queue[0]
            if entry.cancelled:
                queue.popleft()
                continue
            if self.budget.wait(self.now()) > 0.0:
                break
            queue.popleft()
            entry.cancelled = True  # done: a later cancel_queued must not count it again
            self._waiting -= 1
            entry.on_sent(self._send_now(entry.packet, entry.dst, entry.protocol))
        self._arm_queue()

    def try_send(self, packet: bytes, dst: str, protocol: str) -> float | None:
        """Send now if the budget has a token and no `send` is waiting for one (the send time), else
        None and nothing is sent: latency probes go first (module docstring)."""
        if self.allow is not None and dst not in self._allowed:
            self._admit(dst)
        if self._waiting or self.budget.wait(self.now()) > 0.0:
            return None
        return self._send_now(packet, dst, protocol)

    def _admit(self, dst: str) -> None:
        assert self.allow is not None
        self.allow.check(dst)  # NotAllowedError, one line naming the prefixes
        if len(self._allowed) >= 65536:  # bounded even for a huge allowlist
            self._allowed.clear()
        self._allowed.add(dst)

    def _send_now(self, packet: bytes, dst: str, protocol: str) -> float:
        sent_at = self.now()  # read last, right before the syscall
        try:
            self.sockets.send.sendto(packet, (dst, 0))
        except OSError as exc:
            self._send_failed(exc, dst, protocol)
            return sent_at
        finally:
            # The token is spent at a time read *after* sendto returned: a raw IP_HDRINCL send passes the
            # packet to the device inside the syscall, so the recorded time is never earlier than the
            # frame on the wire and no window measured at the interface can see one packet too many.
            # Spent even if the kernel refused the packet: the cap is on attempts.
            self.budget.spend(self.now())
        self.sent[protocol] += 1
        if self.on_send is not None:
            self.on_send(protocol)
        return sent_at

    def _send_failed(self, exc: OSError, dst: str, protocol: str) -> None:
        kind = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        self.send_errors[kind] += 1
        if self.on_send_error is not None:
            self.on_send_error(kind)
        now = self.now()
        last = self._send_error_logged_at
        if last is not None and now - last < SEND_ERROR_LOG_INTERVAL_S:
            self._send_errors_unlogged += 1
            return
        more = f" ({self._send_errors_unlogged} more refused since the last warning)"
        log.warning(
            "the kernel refused a %s probe to %s: %s (%s)%s; check the route and firewall of the probe "
            "namespace", protocol, dst, kind, exc.strerror or exc, more if self._send_errors_unlogged else "",
        )  # fmt: skip
        self._send_error_logged_at = now
        self._send_errors_unlogged = 0

    # -- receiving --------------------------------------------------------------------------------------

    def _drain(self, sock: socket.socket) -> None:
        """Read every queued packet (edge of the loop's readiness); never raises into the loop."""
        offset: int | None = None
        now = 0.0
        dispatch = self.replies.dispatch  # one Python frame less per packet than self.dispatch
        while True:
            try:
                data, ancdata, _flags, _addr = sock.recvmsg(RECV_BUFSIZE, CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # e.g. ECONNREFUSED/EHOSTUNREACH reported on raw sockets after an ICMP error: not ours
                # to handle here, and the next packet is still queued.
                continue
            if offset is None:
                now = self.now()
                offset = clock.offset_ns()
            self.received += 1
            stamp = parse_timestamp(ancdata)
            rx = (stamp - offset) * 1e-9 if stamp is not None else now  # clock.to_monotonic, inlined
            if rx >= now:  # arrived after this batch's clock read (or has no stamp): read the clock again
                now = self.now()
                rx = clock.to_monotonic(stamp, offset, now)
            dispatch(data, rx, now)

    def dispatch(self, data: bytes, rx_time: float, read_at: float | None = None) -> bool:
        """Hand one received IPv4 packet to its session (`ReplyTable.dispatch`); False if nobody's."""
        return self.replies.dispatch(data, rx_time, read_at)

    @property
    def unmatched(self) -> int:
        """Received packets that were nobody's (not a reply, or a reply to no live session)."""
        return self.replies.unmatched
