"""The cyclic garbage collector paused over a command's start-up (issue 25, bench/startup.py).

Start-up allocates only objects that live as long as the process (modules, classes, the methods
dataclasses generate), yet every 700 allocations start a collection that finds nothing to free:
`nkprobe trace` ran 42 of them (4 ms) in its imports before its first probe, and 14 more (1.3 ms) while
its command module and parser were made (gc.callbacks). Paused, the collector
counts those objects in its youngest generation; re-enabled as it was, its next allocation would start
a collection of that generation, every object made meanwhile. So they are moved to the oldest one
unexamined first (gc.freeze, then gc.unfreeze, which puts the frozen objects back there: the gc
module's documentation), where a full collection, rare, looks at them with the rest. Not in a process
that froze objects of its own before (agent.agent.freeze_heap): unfreezing would thaw those too.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """The collector off inside; back as it was after (a caller that had it off keeps it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if not gc.get_freeze_count():
                gc.freeze()
                gc.unfreeze()
            gc.enable()
