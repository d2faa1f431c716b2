"""The global packet budget, stepped with a fake clock (a plain number)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.net.budget import Budget


def take(b: Budget, now: float) -> bool:
    """Spend a token at `now` if one is free, as the engine does (wait, then spend)."""
    if b.wait(now) > 0.0:
        return False
    b.spend(now)
    return True


def test_burst_up_to_capacity_then_refusal() -> None:
    b = Budget(max_pps=20)
    assert [take(b, 0.0) for _ in range(20)] == [True] * 20
    assert take(b, 0.0) is False
    assert b.wait(0.0) == pytest.approx(1.0)


def test_token_returns_one_window_after_it_was_spent() -> None:
    b = Budget(max_pps=3)
    assert take(b, 0.0) and take(b, 0.4) and take(b, 0.8)
    assert not take(b, 0.99)
    assert b.wait(0.99) == pytest.approx(0.01)
    assert take(b, 1.0)  # the token spent at 0.0 came back
    assert not take(b, 1.3)
    assert take(b, 1.4)


def test_fractional_rate_below_one_uses_a_longer_window() -> None:
    b = Budget(max_pps=0.5)
    assert b.capacity == 1 and b.window == pytest.approx(2.0)
    assert take(b, 10.0)
    assert not take(b, 11.9)
    assert take(b, 12.0)


def test_refusal_spends_nothing() -> None:
    b = Budget(max_pps=1)
    assert take(b, 0.0)
    for t in (0.1, 0.5, 0.9):
        assert not take(b, t)
    assert b.in_flight(0.9) == 1
    assert take(b, 1.0)


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan")])
def test_invalid_rates_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="max_pps"):
        Budget(bad)


@given(
    max_pps=st.sampled_from([1.0, 2.0, 5.0, 20.0, 7.5, 100.0]),
    steps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=1, max_size=300),
)
def test_no_one_second_window_ever_exceeds_max_pps(max_pps: float, steps: list[float]) -> None:
    b = Budget(max_pps)
    now, sent = 0.0, []
    for dt in steps:
        now += dt
        while take(b, now):
            sent.append(now)
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 1.0)
        assert in_window <= max_pps
    # and the budget is not wasted: a long enough run gets the full integer rate
    assert b.capacity == int(max_pps)


def test_time_going_backwards_never_loosens_the_budget() -> None:
    b = Budget(max_pps=2)
    assert take(b, 5.0) and take(b, 5.0)
    assert not take(b, 4.0)  # an old `now` is clamped to the latest spend
    assert not take(b, 5.5)


@given(steps=st.lists(st.floats(min_value=0.0, max_value=0.2), min_size=1, max_size=300))
def test_wait_then_spend_later_keeps_the_cap(steps: list[float]) -> None:
    """The engine's order: wait() == 0 at t, sendto, spend(t + syscall time)."""
    b = Budget(10)
    now, sent = 0.0, []
    for dt in steps:
        now += dt
        while b.wait(now) == 0.0:
            b.spend(now + 0.0001)
            sent.append(now + 0.0001)
    for i, start in enumerate(sent):
        assert sum(1 for t in sent[i:] if t < start + 1.0) <= 10
    assert b.in_flight(now) <= 10


def _drain(b: Budget, now: float, sent: list[float]) -> None:
    """Send while the budget allows at `now` (the engine's order: wait, then spend)."""
    while b.wait(now) == 0.0:
        b.spend(now)
        sent.append(now)


@given(
    old=st.sampled_from([1.0, 5.0, 20.0, 100.0]),
    new=st.sampled_from([1.0, 5.0, 20.0, 100.0]),
    steps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=2, max_size=120),
    at=st.integers(min_value=0, max_value=119),
)
def test_set_rate_keeps_the_recent_sends(old: float, new: float, steps: list[float], at: int) -> None:
    """A reload mid-run: no one-second window holds more than the larger cap, and every window that
    ends with a send made after the reload holds at most the new cap."""
    b = Budget(old)
    now, sent, first_after = 0.0, [], 0
    for i, dt in enumerate(steps):
        now += dt
        if i == min(at, len(steps) - 1):
            b.set_rate(new)
            first_after = len(sent)
        _drain(b, now, sent)
    for i, t in enumerate(sent):
        assert sum(1 for s in sent[i:] if s < t + 1.0) <= max(old, new)
        if i >= first_after:
            assert sum(1 for s in sent[: i + 1] if s > t - 1.0) <= new


def test_a_reload_right_after_a_full_second_sends_nothing_more_that_second() -> None:
    b = Budget(10)
    sent: list[float] = []
    _drain(b, 0.0, sent)
    b.set_rate(10)  # unchanged: nothing forgotten
    b.set_rate(20)
    _drain(b, 0.5, sent)
    assert len(sent) == 20  # 10 more under the new cap of 20, not 20 more
    b.set_rate(5)
    assert b.wait(1.0) == 0.5  # 30 - 5 + 1 of the sends must expire first: the ones of 0.5
    _drain(b, 1.5, sent)
    assert len(sent) == 25
