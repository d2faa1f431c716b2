"""The network side: raw probe sockets, kernel receive timestamps, namespaces, what may leave and when.

- `sockets`: the raw socket set (send via IPPROTO_RAW, receive ICMP and TCP), SO_TIMESTAMPNS, filters,
  the privilege check, the source-address lookup;
- `clock`: monotonic send times and the mapping of kernel receive stamps onto that clock;
- `engine`: `ProbeEngine`, the asyncio send path (under the global budget) and receive path (replies
  matched to sessions by their quoted headers);
- `netns`: create sockets inside a named network namespace while the process stays where it is;
- `budget`: the global packet budget (`agent.max_pps`) every send spends from;
- `allowlist`: `[destination] prefixes`, checked before any socket is opened and again at each send;
- `localnet`: the watch on the local default route and links (a change re-traces every target).

Typical use (composition root)::

    sockets = call_in_netns(args.netns, open_socket_set)
    async with ProbeEngine(sockets, Budget(config.agent.max_pps)) as engine:
        ...

The names below are re-exported lazily (PEP 562), as agent.classify does: `nkprobe trace` checks its
target against `allowlist` before the engine and asyncio are loaded (agent.commands.trace).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.net.engine import ProbeEngine
    from agent.net.netns import call_in_netns
    from agent.net.sockets import PRIVILEGE_HINT, SocketSet, open_socket_set, source_address
    from agent.trace.registry import ReplyHandler

__all__ = [
    "PRIVILEGE_HINT",
    "ProbeEngine",
    "ReplyHandler",
    "SocketSet",
    "call_in_netns",
    "open_socket_set",
    "source_address",
]

_HOMES = {
    "PRIVILEGE_HINT": "agent.net.sockets",
    "ProbeEngine": "agent.net.engine",
    "ReplyHandler": "agent.trace.registry",
    "SocketSet": "agent.net.sockets",
    "call_in_netns": "agent.net.netns",
    "open_socket_set": "agent.net.sockets",
    "source_address": "agent.net.sockets",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module 'agent.net' has no attribute {name!r}")
