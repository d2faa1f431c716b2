"""An asyncio event loop on virtual time, for testing timing without sleeping (as aioquic's tests do).

`loop.time()` is a number the loop itself advances: whenever nothing is ready to run, the selector
"waits" by moving the clock straight to the next timer. asyncio.sleep, wait_for and call_later all
follow it, so a test runs an hour of scheduling in milliseconds and the same way every time. Only for
code that does no real I/O (fakes, not sockets) and no threads.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events and timeout is not None and timeout > 0 and self.loop is not None:
            self.loop.now += timeout
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self.now = start

    def time(self) -> float:
        return self.now


def run_virtual(coro: Coroutine[Any, Any, T], start: float = 1000.0) -> T:
    loop = VirtualTimeLoop(start)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
