"""Clocks for RTTs: sends are stamped with CLOCK_MONOTONIC, receives by the kernel (CLOCK_REALTIME).

The choice. The kernel's receive stamp (SO_TIMESTAMPNS) is taken when the packet reaches the socket layer,
so it excludes event-loop latency, which on a busy Raspberry Pi is easily milliseconds. It is a
CLOCK_REALTIME time, while send times and every timer of the sans-I/O sessions live on CLOCK_MONOTONIC
(immune to clock steps). We map the receive stamp onto the monotonic timeline with the offset
REALTIME - MONOTONIC read as a pair right after `recvmsg` returns:

    rx_monotonic = rx_realtime - (realtime_now - monotonic_now)

Both clocks advance at the same NTP-disciplined rate (clock_gettime(2): MONOTONIC "is affected by the
incremental adjustments performed by adjtime(3) and NTP"), so the offset is constant except across a
step of the wall clock, and a step that falls between a packet's arrival and our read is the only thing
that could spoil that one RTT. Such a receive time is kept inside [sent, read]: `to_monotonic` never
returns a time later than the read (a backward step), and `receive_time` replaces one earlier than the
probe's send (a forward step: a Raspberry Pi has no RTC, so its first NTP sync steps the clock by
however long it was off) with the read time, as if the packet had no kernel stamp. The
pair is read within a microsecond (vDSO clock_gettime), far below the 0.3 ms error budget. The
alternative, transmit timestamps via SO_TIMESTAMPING on the error queue, would add a second read per
probe for a gain of a few microseconds (the time between our monotonic read and the kernel's send).
"""

from __future__ import annotations

import time


def offset_ns() -> int:
    """REALTIME - MONOTONIC in ns, from reads bracketing one another to halve the read's own duration."""
    m1 = time.monotonic_ns()
    r = time.time_ns()
    m2 = time.monotonic_ns()
    return r - (m1 + m2) // 2


def to_monotonic(rx_realtime_ns: int | None, offset: int, now_mono: float) -> float:
    """A kernel receive stamp on the monotonic timeline; `now_mono` when there is no stamp.

    >>> to_monotonic(10_500_000_000, 10_000_000_000, 1.0)
    0.5
    >>> to_monotonic(None, 0, 2.5)
    2.5
    >>> to_monotonic(99_000_000_000, 0, 2.5)  # a wall-clock step: never later than now
    2.5
    """
    if rx_realtime_ns is None:
        return now_mono
    t = (rx_realtime_ns - offset) / 1e9
    return min(t, now_mono)


STAMP_EARLY_S = 0.001
"""How much earlier than the send a receive stamp may be and still be the answer's: an answer the kernel
makes on loopback can keep a stamp taken before the request left (within a TCP socket's departure time
or the request's own stamp, microseconds before our pre-send clock read); that is an RTT of about 0, not
a clock step. A step of the wall clock is NTP's, which slews offsets below 128 ms (ntpd's step
threshold) and steps larger ones."""


def receive_time(rx: float, sent_at: float, read_at: float) -> float:
    """The receive time to use for an answer to a probe sent at `sent_at`: the kernel's `rx`, the send
    time itself if `rx` is a few microseconds earlier (STAMP_EARLY_S), and if a wall-clock step made it
    much earlier than the send, `read_at` (when we read the packet), as for a packet without a stamp. An
    RTT is never negative and never made up.

    >>> receive_time(1.25, 1.0, 1.5)
    1.25
    >>> receive_time(0.99998, 1.0, 1.5)  # a loopback answer stamped before the send: an RTT of 0
    1.0
    >>> receive_time(0.75, 1.0, 1.5)  # the stamp predates the send: the clock stepped forward
    1.5
    """
    if rx >= sent_at:
        return rx
    return sent_at if sent_at - rx <= STAMP_EARLY_S else read_at
