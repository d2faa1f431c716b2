"""nkprobe_fault{kind="history"} has one writer: 1 while the sink or the writer thread fails, never cleared
by the other side's success."""

from __future__ import annotations

import pytest

from agent.model import Target
from agent.state import State


def state() -> State:
    return State(
        agent_name="t", version="0", targets=[Target("198.19.176.10")], ping_protocols=("icmp",),
        trace_protocol="tcp", tags=("china_unicom", "transtelecom", "other", "unknown"),
    )  # fmt: skip


def fault(s: State) -> bool:
    return s.snapshot().faults["history"]


def test_either_side_failing_is_the_fault_and_the_other_side_cannot_clear_it() -> None:
    s = state()
    s.record_history_write(False)  # the agent's hand-off to the history raised
    s.set_history_status(pending=0, written=3, dropped=0, fault=False)  # the writer thread is fine
    assert fault(s)  # before: the poll's False overwrote the sink's True within a second
    s.record_history_write(True)
    assert not fault(s)
    s.set_history_status(pending=4, written=3, dropped=0, fault=True)  # the disk is full
    s.record_history_write(True)  # handing a change over still works (it is queued)
    assert fault(s)
    s.set_history_status(pending=0, written=7, dropped=0, fault=False)
    assert not fault(s)
    snap = s.snapshot()
    assert snap.history_write_errors == 1 and snap.errors["history"] == 1 and snap.history_written == 7


def test_the_history_fault_has_no_other_writer() -> None:
    with pytest.raises(ValueError, match="derived"):
        state().set_fault("history", True)
