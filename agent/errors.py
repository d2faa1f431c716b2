"""Our own faults. Each message is one line that says what to do about it.

A timeout or an unreachable target is a *result*, never one of these (README "Commands": an unreachable target
is a result). `RateLog` is how a fault that repeats (a probe, a round, a history write) is logged.
"""

from __future__ import annotations

import logging


class NkprobeError(Exception):
    """Base of every fault we report ourselves. `exit_code`: 2 = usage/config/env (README "Commands")."""

    exit_code = 2


class UsageError(NkprobeError):
    """A bad flag or argument combination."""


class ConfigError(NkprobeError):
    """An invalid configuration; `problems` lists every one by key path."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class PrivilegeError(NkprobeError):
    """Missing root or CAP_NET_RAW."""


class InputError(NkprobeError):
    """An unreadable or malformed input file."""


class LabError(NkprobeError):
    """The namespace lab cannot be built, changed or removed as asked."""


class NotAllowedError(NkprobeError):
    """A target outside the configured destination prefixes (the allowlist)."""


class RateLog:
    """Log the 1st, 2nd, 4th, 8th... occurrence of a repeating fault: visible, never a flood."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._counts: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> None:
        n = self._counts.get(key, 0) + 1
        self._counts[key] = n
        if n & (n - 1) == 0:
            self._log.warning(message + " (occurrence %d)", *args, n)
