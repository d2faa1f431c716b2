"""Waiting on a condition with a bound, instead of sleeping for a guessed time and then asserting.

A fixed sleep is either too long (a slow suite) or, on a loaded 2-core CI machine, too short (a flaky
one). `wait_for` polls the condition itself and fails with a message saying what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], object], timeout: float, what: str | Callable[[], str], step: float = 0.2
) -> float:
    """Poll `check` until it returns something true; the seconds that took.

    On timeout, AssertionError with `what` (a callable is called then, so it can show the latest
    state, e.g. a log tail). `check` is always called once more after the deadline, so a condition that
    became true while the last step slept still counts.

    >>> wait_for(lambda: True, 1.0, "never") < 0.1
    True
    >>> wait_for(lambda: False, 0.05, "the thing", step=0.01)
    Traceback (most recent call last):
    AssertionError: after 0.05 s: the thing
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        last = time.monotonic() >= deadline
        if check():
            return time.monotonic() - start
        if last:
            message = what() if callable(what) else what
            raise AssertionError(f"after {timeout:g} s: {message}")
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))
