"""Find the session a parsed reply belongs to: the receive path's one lookup (sans-I/O)."""

from __future__ import annotations

from agent.model import Protocol
from agent.packets.parse import ParsedReply, match_key
from agent.trace.session import Session


class SessionTable:
    """Live sessions by flow (protocol, destination, (sport, dport)); at most one session per flow.

    The receive loop calls `dispatch(parsed, now)` for every parsed packet; replies to nobody's flow
    (another program's traceroute, late replies to finished sessions) are counted, not raised.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[Protocol, str, tuple[int, int]], Session] = {}
        self.foreign = 0  # parsed replies that matched no live session

    def add(self, session: Session) -> None:
        """Register a session; two live sessions on one flow would make replies ambiguous."""
        if session.key in self._sessions:
            raise ValueError(f"a session on flow {session.key} is already running; use another flow id")
        self._sessions[session.key] = session

    def remove(self, session: Session) -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]

    def __len__(self) -> int:
        return len(self._sessions)

    def dispatch(self, reply: ParsedReply, now: float) -> Session | None:
        """Hand `reply` to its session; return that session if it took the reply, else None."""
        session = self._sessions.get(match_key(reply).session_key)
        if session is not None and session.on_reply(reply, now):
            return session
        self.foreign += 1
        return None
