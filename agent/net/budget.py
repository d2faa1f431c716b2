"""The global packet budget: `agent.max_pps`, a hard cap on probe packets per second, all kinds together.

Pure: every method takes `now` (seconds on any monotonic clock); the sockets layer (`agent.net`) holds the
one instance of the process and asks it before every send.

Why not a classic token bucket (capacity C, refilled continuously at r per second)? It lets C + r packets
through in some one-second window, so with C = r = max_pps a burst right after an idle second sends twice
the cap, and the contract says *hard* cap. Here each of the `capacity` tokens comes back exactly one
`window` after it was spent (a sliding-window limiter): no window of that length ever holds more than
`capacity` sends, while a whole trace's first volley of TTLs may still leave at once. With max_pps >= 1
the window is one second and the capacity floor(max_pps); below 1 pps the capacity is one token and the
window 1 / max_pps seconds. Memory is bounded by the capacity (a deque of spend times).
"""

from __future__ import annotations

import math
from collections import deque


class Budget:
    """A shared limiter: at most `capacity` sends in any half-open interval of `window` seconds.

    >>> b = Budget(max_pps=2)
    >>> b.spend(0.0); b.spend(0.0)
    >>> b.wait(0.5)
    0.5
    >>> b.wait(1.0)
    0.0
    """

    def __init__(self, max_pps: float) -> None:
        self._spent: deque[float] = deque()
        self.set_rate(max_pps)

    def set_rate(self, max_pps: float) -> None:
        """Change the cap in place (a config reload), keeping the recent sends.

        A new Budget would forget them and let a full new capacity leave on top of the old one within
        the same second (up to twice the cap); kept, the sends of the last window still count against
        the new capacity, so `wait` holds new sends until the window has room under the new cap.
        """
        if not max_pps > 0 or math.isinf(max_pps):
            raise ValueError(f"max_pps must be a positive finite number, not {max_pps!r}")
        self.max_pps = float(max_pps)
        # A fractional rate above 1 rounds down (7.5 pps allows 7 in any second): a cap, not an average.
        self.capacity = max(1, math.floor(self.max_pps))
        self.window = max(1.0, 1.0 / self.max_pps)

    def _expire(self, now: float) -> None:
        while self._spent and self._spent[0] + self.window <= now:
            self._spent.popleft()

    def wait(self, now: float) -> float:
        """Seconds from `now` until a token is free (0.0 if one is free now)."""
        if len(self._spent) < self.capacity:
            return 0.0  # fast path, once per probe: stale entries are dropped when the deque fills
        self._expire(now)
        if len(self._spent) < self.capacity:
            return 0.0
        # After a cut by set_rate the window may hold more than `capacity` sends: a token is free once
        # all but capacity - 1 of them have expired (with exactly `capacity` held, that is the oldest).
        return self._spent[-self.capacity] + self.window - now

    def spend(self, now: float) -> None:
        """Record a send at `now` that `wait(...) == 0` allowed a moment ago (the engine's fast path:
        it checks before sendto and records the time after it, so the recorded time is never earlier
        than the packet on the wire)."""
        spent = self._spent
        if spent and now < spent[-1]:
            now = spent[-1]
        if len(spent) >= self.capacity:
            self._expire(now)
        spent.append(now)

    def in_flight(self, now: float) -> int:
        """Tokens spent within the last window."""
        self._expire(now)
        return len(self._spent)
