"""Run socket creation inside a named network namespace, leaving the rest of the process where it is.

`nkprobe run --netns NAME` keeps its probe sockets in NAME while its HTTP server stays in the current
namespace. A socket belongs for life to the namespace it was created in (network_namespaces(7)), and
setns(2) with CLONE_NEWNET changes the namespace of the calling *thread* only. So we create the sockets
on a short-lived thread that first joins NAME (the file `ip netns add` bind-mounts under /run/netns),
then hand them back; the main thread never moves. Joining a namespace needs CAP_SYS_ADMIN (setns(2)).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import ctypes

from agent.errors import PrivilegeError, UsageError

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"

T = TypeVar("T")


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at `fd` (setns(2), CLONE_NEWNET).

    os.setns exists from Python 3.12 (trixie's 3.13); bookworm's 3.11 calls libc through ctypes.
    """
    os_setns = getattr(os, "setns", None)
    if os_setns is not None:
        os_setns(fd, CLONE_NEWNET)
        return
    import ctypes

    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library, loaded once: the process's own symbols (dlopen(NULL)) include libc's setns.
    ctypes.util.find_library would run `ldconfig -p` in a child process at every call (the agent joins
    its namespace for every new target's route lookup, agent.net.engine.source_for) and pull in
    tempfile and shutil.

    ctypes is imported here, because only a namespace switch on Python < 3.12 needs it (2 ms of every
    `nkprobe trace` start-up otherwise, bench/startup.py).
    """
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def namespace_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise UsageError(f"{name!r} is not a network namespace name; list them with 'ip netns list'")
    return os.path.join(NETNS_RUN_DIR, name)


def call_in_netns(name: str | None, fn: Callable[[], T]) -> T:
    """`fn()` run on a thread that has joined namespace `name` (or directly, when `name` is None)."""
    if name is None:
        return fn()
    path = namespace_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UsageError(f"no network namespace {name!r} ({path} is missing); see 'ip netns list'") from None
    box: dict[str, object] = {}

    def worker() -> None:
        try:
            setns(fd)
        except PermissionError as exc:
            box["setns_error"] = exc
            return
        except BaseException as exc:
            box["error"] = exc
            return
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    try:
        thread = threading.Thread(target=worker, name=f"netns-{name}")
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    denied = box.get("setns_error")
    if isinstance(denied, PermissionError):
        raise PrivilegeError(
            f"cannot join network namespace {name!r} ({denied.strerror}); that needs CAP_SYS_ADMIN "
            "(run as root, or add it to the unit's AmbientCapabilities=)"
        )
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    return box["value"]  # type: ignore[return-value]
