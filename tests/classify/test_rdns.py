"""agent.classify.rdns: reverse names within a budget, cached, bounded; fake resolvers only (no real DNS)."""

from __future__ import annotations

import asyncio
import threading
import time

from agent.classify.rdns import ReverseNames

NAMES = {"188.43.225.153": "KPTC-gw.transtelecom.net", "219.158.39.42": None}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_names_cached_and_negative_answers_remembered() -> None:
    calls: list[str] = []

    def resolver(address: str) -> str | None:
        calls.append(address)
        return NAMES.get(address)

    clock = Clock()
    rn = ReverseNames(resolver, clock=clock, ttl_s=100, negative_ttl_s=10)
    got = asyncio.run(rn.names(["188.43.225.153", "219.158.39.42", "188.43.225.153"], budget_s=5))
    assert got == {"188.43.225.153": "KPTC-gw.transtelecom.net"}
    assert sorted(calls) == ["188.43.225.153", "219.158.39.42"]
    asyncio.run(rn.names(["188.43.225.153", "219.158.39.42"], budget_s=5))
    assert len(calls) == 2  # both cached, the missing name too
    clock.now = 11  # the negative entry expired, the positive one not
    asyncio.run(rn.names(["188.43.225.153", "219.158.39.42"], budget_s=5))
    assert sorted(calls) == ["188.43.225.153", "219.158.39.42", "219.158.39.42"]
    rn.close()


def test_a_slow_resolver_never_delays_the_result_beyond_the_budget() -> None:
    release = threading.Event()

    def slow(address: str) -> str | None:
        release.wait(10)
        return "late.transtelecom.net"

    rn = ReverseNames(slow)

    async def scenario() -> tuple[dict[str, str], float, dict[str, str]]:
        start = time.monotonic()
        first = await rn.names(["188.43.225.153"], budget_s=0.05)
        elapsed = time.monotonic() - start
        release.set()
        for _ in range(200):  # the lookup finishes in the background and fills the cache
            if rn.cached("188.43.225.153"):
                break
            await asyncio.sleep(0.01)
        return first, elapsed, await rn.names(["188.43.225.153"], budget_s=0)

    first, elapsed, second = asyncio.run(scenario())
    assert first == {} and elapsed < 1.0
    assert second == {"188.43.225.153": "late.transtelecom.net"}
    rn.close()


def test_blocking_variant_respects_budget_and_bounds() -> None:
    release = threading.Event()

    def slow(address: str) -> str | None:
        if address.endswith(".1"):
            release.wait(10)
        return f"r-{address}.zsttk.ru"

    rn = ReverseNames(slow, max_in_flight=3, max_entries=2, workers=2)
    start = time.monotonic()
    got = rn.names_blocking(["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], budget_s=0.2)
    assert time.monotonic() - start < 2.0
    release.set()
    assert "10.0.0.1" not in got  # too slow
    assert "10.0.0.4" not in got  # over max_in_flight: not even asked
    assert set(got) <= {"10.0.0.2", "10.0.0.3"}
    assert len(rn) <= 2  # LRU bound
    rn.close()


def test_a_failing_resolver_is_counted_not_raised() -> None:
    def broken(address: str) -> str | None:
        raise RuntimeError("resolver exploded")

    rn = ReverseNames(broken)
    assert asyncio.run(rn.names(["1.2.3.4"], budget_s=2)) == {}
    assert rn.failures == 1
    rn.close()


def test_a_stuck_lookup_does_not_hold_the_process_at_exit() -> None:
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from agent.classify.rdns import ReverseNames\n"
        "rn = ReverseNames(lambda a: threading.Event().wait(60) and None)\n"
        "print(rn.names_blocking(['192.0.2.1'], budget_s=0.1))\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "{}"
    assert time.monotonic() - start < 20  # not the resolver's 60 s
