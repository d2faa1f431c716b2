"""The receive path's one lookup (sans-I/O): a parsed reply to the handler of the session it belongs to.

`ReplyTable` is the table `agent.net.engine.ProbeEngine` dispatches every received packet through, and the
one the scripted wire (agent.lab.sim) and the fuzz tests use: there is a single dispatcher. A reply's
session key (protocol, destination, (sport, dport)), read from what it quotes (agent.packets.parse),
picks the handler; the session finds the probe by its identity. Replies to nobody's flow (another
program's traceroute, late replies to finished sessions) are counted and dropped, never raised.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from agent.packets.parse import ParsedReply, parse

if TYPE_CHECKING:
    pass

ReplyHandler = Callable[[ParsedReply, float, float], object]
"""Called with a parsed answer, its receive time and the time it was read, both on the monotonic clock.

The receive time is the kernel's stamp; the handler, which knows the probe's send time, replaces a stamp
earlier than the send (a wall-clock step) with the read time: `agent.net.clock.receive_time`."""


class ReplyTable:
    """Reply handlers by session key; at most one live session per key (flow)."""

    def __init__(self) -> None:
        self._handlers: dict[Hashable, ReplyHandler] = {}
        self.unmatched = 0  # packets that were not a reply, or a reply to no live session

    def register(self, session_key: Hashable, handler: ReplyHandler) -> None:
        """Route replies whose `match_key(...).session_key` equals `session_key` to `handler`."""
        if session_key in self._handlers:
            raise ValueError(f"session key {session_key!r} is already in use; use another flow id")
        self._handlers[session_key] = handler

    def unregister(self, session_key: Hashable) -> None:
        self._handlers.pop(session_key, None)

    def in_use(self, session_key: Hashable) -> bool:
        return session_key in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)

    def dispatch(self, data: bytes, rx_time: float, read_at: float | None = None) -> bool:
        """Parse one received IPv4 packet and hand it to its session's handler; False if it is nobody's.

        `rx_time` is the kernel's receive time, `read_at` (default: `rx_time`) when we read the packet."""
        parsed = parse(data)
        if parsed is None:
            self.unmatched += 1
            return False
        # match_key(parsed).session_key, without building the MatchKey: this runs once per packet.
        handler = self._handlers.get((parsed.protocol, parsed.dst, (parsed.sport, parsed.dport)))
        if handler is None:
            self.unmatched += 1
            return False
        handler(parsed, rx_time, rx_time if read_at is None else read_at)
        return True
