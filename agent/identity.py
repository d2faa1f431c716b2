"""The agent's id: a random name made once, on first start, kept in `<state_dir>/agent-id`.

`agent.name` is what a volunteer calls the Pi and may change (a move, a new naming scheme); a reinstall
or an upgrade keeps the state directory (install.sh, `uninstall` without `--purge`). So the id lives
there, not in the config: the fleet can tell one agent across renames (nkprobe_agent_info{id}), the way
RIPE Atlas probes keep their id across reflashes by their key, not by their name.

`KeptId` is what the running agent uses: a state directory that cannot take the file yet (read-only, not
a directory) is already a fault of its own (nkprobe_fault{kind="history"}), so the agent goes on
probing with an empty id and tries again now and then, rather than refusing to start.

The file is written once, atomically (a temporary file linked into place with link(2), which fails if
another start won the race), and never rewritten: an id that changed would split the agent's history
in two on the fleet dashboard.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable

from agent.errors import InputError

log = logging.getLogger("nkprobe.identity")

ID_FILE = "agent-id"
# A UUID4 as made below; also what we accept from the file (a hand-made id may be any such token).
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def agent_id(state_dir: str, new: str | None = None) -> str:
    """The id stored under `state_dir`, made (from `new`, else a fresh UUID4) if there is none yet.

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> first = agent_id(d, new="0b7c2c4e-6f1d-4d7a-9b0e-3f2a1c5d8e90")
    >>> first, agent_id(d) == first
    ('0b7c2c4e-6f1d-4d7a-9b0e-3f2a1c5d8e90', True)
    """
    path = os.path.join(state_dir, ID_FILE)
    found = _read(path)
    if found is not None:
        return found
    if new is None:
        import uuid  # only the first start makes an id; uuid (with platform) is not kept resident (issue 25)

        new = str(uuid.uuid4())
    made = new
    try:
        os.makedirs(state_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(made + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # fails with EEXIST if another start made one first: theirs stands
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError as exc:
        raise InputError(
            f"cannot write the agent id {path}: {exc.strerror or exc}; make agent.state_dir writable "
            "by the agent's user"
        ) from exc
    stored = _read(path)
    assert stored is not None
    return stored


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(
            f"cannot read the agent id {path}: {exc.strerror or exc}; make it readable by the agent's user"
        ) from exc
    if not _ID.fullmatch(text):
        raise InputError(
            f"{path} does not hold an agent id (letters, digits, '.', '_', '-'); remove it and a new id "
            "is made at the next start (the fleet then sees a new agent)"
        )
    return text


class KeptId:
    """The id for the exporter: `agent_id` on the first call; while that fails, "" (logged once) and
    another try at most every `retry_s`, so an id appears as soon as the state directory is usable."""

    def __init__(
        self, state_dir: str, *, retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.state_dir = state_dir
        self.retry_s = retry_s
        self._clock = clock
        self._id = ""
        self._tried_at: float | None = None
        self._warned = False

    def __call__(self) -> str:
        if self._id:
            return self._id
        now = self._clock()
        if self._tried_at is not None and now - self._tried_at < self.retry_s:
            return ""
        self._tried_at = now
        try:
            self._id = agent_id(self.state_dir)
        except InputError as exc:
            if not self._warned:
                log.warning('%s (exported with id="" until then)', exc)
                self._warned = True
        return self._id
