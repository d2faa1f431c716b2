"""The sans-I/O Paris traceroute session and the flow-identifier arithmetic (no sockets, no clock).

A driver (agent.probers) builds one `Session` per (target, protocol, flow id), registers its reply
handler under `session.key` in the `ReplyTable` of the receive path (the engine's), and runs the loop
described in `agent.trace.session`: ``next_probes(now)`` -> send -> ``sent(probe, now)``; ``on_reply``
(called by ``ReplyTable.dispatch``);
``on_timer(now)`` at ``next_deadline()``; ``result()`` once ``done``. Every setting of a trace is
declared once, in `agent.trace.settings.TraceSettings`.
"""

from agent.trace.flow import DEFAULT_PORT, SPORT_BASE, flow_spec, ident_sequence
from agent.trace.registry import ReplyHandler, ReplyTable
from agent.trace.session import Probe, Session, SessionStats, TraceParams
from agent.trace.settings import TraceSettings

__all__ = [
    "DEFAULT_PORT",
    "SPORT_BASE",
    "Probe",
    "ReplyHandler",
    "ReplyTable",
    "Session",
    "SessionStats",
    "TraceParams",
    "TraceSettings",
    "flow_spec",
    "ident_sequence",
]
