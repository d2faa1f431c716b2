"""The one place that knows the `websockets` package's API, which changed between the versions Debian
ships: bookworm's python3-websockets 10.4 has only the "legacy" asyncio client
(`websockets.legacy.client.connect`); 13.0 added `websockets.asyncio.client`, which trixie's 14.x and
PyPI's current releases use, and which 14.0 made the default; keyword arguments and exceptions differ
(`extra_headers` became `additional_headers`, `InvalidStatusCode` became `InvalidStatus`:
https://websockets.readthedocs.io/en/stable/howto/upgrade.html). Both connect as
`async with connect(url, ...) as ws`, `await ws.send(text)`, `await ws.recv()`; both raise subclasses of
`websockets.exceptions.WebSocketException` (closed connections, refused handshakes, bad URIs).

Imported only when the live view is on: the agent with `[bgp] live = false` never imports websockets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.errors import UsageError

# Read once, when the live view first asks: a missing package becomes MissingWebsockets's one line.
_websockets: Any
try:
    import websockets as _websockets
    from websockets.exceptions import WebSocketException as _WebSocketException

    try:
        from websockets.asyncio.client import connect as _connect  # websockets >= 13
    except ImportError:  # 10.x to 12.x
        from websockets.legacy.client import connect as _connect  # type: ignore[assignment,no-redef,unused-ignore]
except ImportError:
    _websockets = None


class MissingWebsockets(UsageError):
    pass


def _module() -> tuple[Callable[..., Any], type[BaseException], str]:
    if _websockets is None:
        raise MissingWebsockets(
            "the live BGP view needs the websockets package: pip install 'nkprobe[live]' or "
            "apt install python3-websockets; or set [bgp] live = false"
        )
    return _connect, _WebSocketException, str(getattr(_websockets, "__version__", "?"))


def version() -> str:
    """The websockets version in use (MissingWebsockets if there is none)."""
    return _module()[2]


def errors() -> tuple[type[BaseException], ...]:
    """What a connection may raise besides timeouts: the package's errors and the socket's."""
    return (_module()[1], OSError, EOFError)


def connect(url: str, *, open_timeout: float) -> Any:
    """An async context manager giving a connection with `send(str)` and `recv() -> str | bytes`.
    Keepalive pings are ours (RIS Live's JSON ping, agent.bgp.feed), so the library's are off; the
    size bound is RIS Live's largest UPDATE many times over. Only keyword arguments both APIs take with
    the same meaning are passed (the client names itself in the URL, as RIS Live's manual asks)."""
    fn = _module()[0]
    return fn(url, open_timeout=open_timeout, ping_interval=None, close_timeout=2, max_size=1 << 20)
