"""Shared call budgets, tested in honestly accelerated time.

A VirtualTime clock stands in for time.monotonic and asyncio.sleep: sleepers wake in order of
their deadline, and time jumps to the next deadline only when every task is blocked. The
budget code runs unchanged; only the clock it was given is virtual.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from directservice.core.model import DiscoveryError
from directservice.discovery.budget import (
    DEFAULT_THROTTLE_PAUSE,
    MAX_THROTTLE_PAUSE,
    BudgetKey,
    RateBudgets,
    _Bucket,
    backoff_delay,
)

pytestmark = pytest.mark.unit

SUB_USER = BudgetKey("modelArts/user-abc", 20)


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(delay, 0.0), next(self._order), future))
        await future

    async def run_until(self, end: float) -> None:
        """Let tasks run; whenever all are blocked, jump to the next wake-up (up to `end`)."""
        while True:
            for _ in range(50):  # enough zero-sleeps for lock hand-overs to settle
                await asyncio.sleep(0)
            if not self._sleepers or self._sleepers[0][0] > end:
                self.now = end
                return
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)

    async def drive(self, work: Awaitable[Any]) -> Any:
        """Run `work` to completion, advancing time whenever it (and all else) is blocked."""
        task = asyncio.ensure_future(work)
        while True:
            for _ in range(50):
                await asyncio.sleep(0)
            if task.done():
                return task.result()
            if not self._sleepers:
                raise AssertionError("deadlock: blocked with no sleeper to wake")
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)


def run(scenario: Callable[[VirtualTime], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        vt = VirtualTime()
        return await vt.drive(scenario(vt))

    return asyncio.run(main())


def run_fleet(scenario: Callable[[VirtualTime], Awaitable[Any]]) -> Any:
    """For scenarios that advance time themselves with run_until."""
    return asyncio.run(scenario(VirtualTime()))


def max_in_window(times: list[float], window: float = 60.0) -> int:
    """The most calls in any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max((sum(1 for u in ordered if t <= u < t + window) for t in ordered), default=0)


# --- the budget is never exceeded, and it is shared fairly ---------------------------------


def test_five_services_on_one_sub_user_for_three_minutes() -> None:
    calls: list[tuple[float, str]] = []

    async def scenario(vt: VirtualTime) -> list[float]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        intervals: list[float] = []

        async def service(name: str) -> None:
            member = budgets.member(name)
            while True:
                await member.acquire(SUB_USER)
                calls.append((vt.now, name))
                interval = member.effective_interval(5.0)
                intervals.append(interval)
                await vt.sleep(interval)

        tasks = [asyncio.create_task(service(f"ns/svc{i}")) for i in range(5)]
        await vt.run_until(180.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return intervals

    intervals = run_fleet(scenario)
    times = [t for t, _ in calls if t < 180.0]
    # 20/min for 3 minutes is 60 calls; the bucket starts with its one stored token, which
    # is the first of those 60, so the burst adds nothing beyond the budget.
    assert len(times) <= 60
    assert len(times) >= 57  # and the budget is actually used, not wasted
    assert max_in_window(times) <= 20
    per_service = Counter(name for t, name in calls if t < 180.0)
    assert max(per_service.values()) - min(per_service.values()) <= 1  # fair
    # Once all five are seated, each is told to poll every 5 x 60 / 20 = 15 s.
    assert intervals[-1] == pytest.approx(15.0)


def test_greedy_services_still_cannot_exceed_the_budget() -> None:
    """Services that ignore effective_interval and poll every 5 s are held back by acquire()."""
    calls: list[tuple[float, str]] = []

    async def scenario(vt: VirtualTime) -> None:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)

        async def service(name: str) -> None:
            member = budgets.member(name)
            while True:
                await member.acquire(SUB_USER)
                calls.append((vt.now, name))
                await vt.sleep(5.0)

        tasks = [asyncio.create_task(service(f"svc{i}")) for i in range(5)]
        await vt.run_until(180.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    run_fleet(scenario)
    times = [t for t, _ in calls if t < 180.0]
    assert len(times) <= 60
    assert max_in_window(times) <= 20
    per_service = Counter(name for t, name in calls if t < 180.0)
    assert max(per_service.values()) - min(per_service.values()) <= 1  # FIFO: nobody starves


def test_one_service_under_its_budget_keeps_its_interval() -> None:
    async def scenario(vt: VirtualTime) -> float:
        member = RateBudgets(clock=vt.clock, sleep=vt.sleep).member("a")
        await member.acquire(SUB_USER)
        return member.effective_interval(5.0)

    assert run(scenario) == 5.0  # 1 x 60 / 20 = 3 s < 5 s


def test_separate_keys_do_not_share() -> None:
    async def scenario(vt: VirtualTime) -> tuple[float, float]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        a, b = budgets.member("a"), budgets.member("b")
        await a.acquire(BudgetKey("k1", 20))
        await b.acquire(BudgetKey("k2", 20))
        return vt.now, a.effective_interval(1.0)

    assert run(scenario) == (0.0, 3.0)  # no waiting: each key had its own token


def test_the_strictest_member_sets_the_rate() -> None:
    async def scenario(vt: VirtualTime) -> float:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        await budgets.member("a").acquire(BudgetKey("k", 600))
        strict = budgets.member("b")
        await strict.acquire(BudgetKey("k", 60))
        return strict.effective_interval(1.0)

    assert run(scenario) == pytest.approx(2 * 60 / 60)


def test_the_rate_follows_a_member_that_changes_or_leaves() -> None:
    async def scenario(vt: VirtualTime) -> list[float | None]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        a, b = budgets.member("a"), budgets.member("b")
        await a.acquire(BudgetKey("k", 600))
        await b.acquire(BudgetKey("k", 60))
        seen = [a.sharing()[1]]
        vt.now += 10.0
        await b.acquire(BudgetKey("k", 30))  # b's spec asks for less
        seen.append(a.sharing()[1])
        b.leave()
        seen.append(a.sharing()[1])
        a.leave()
        c = budgets.member("c")
        await c.acquire(BudgetKey("k"))  # unlimited: the last limit left with a
        seen.append(c.sharing()[1])
        return seen

    assert run(scenario) == [60, 30, 600, None]


LIMITS = st.one_of(st.none(), st.sampled_from([0.0, 20.0, 60.0, 600.0]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), LIMITS, st.booleans()), max_size=40))
def test_the_kept_rate_is_always_the_strictest_seat(
    steps: list[tuple[str, float | None, bool]],
) -> None:
    """The rate is kept up to date as seats come, change and go, not recomputed from every
    seat per call: whatever the order, it equals the strictest limit of the seats there are."""
    bucket = _Bucket(tokens=1.0, updated=0.0)
    for now, (member, limit, leaves) in enumerate(steps):
        if leaves:
            bucket.stand([member])
        else:
            bucket.sit(member, limit, float(now))
        limits = [s.calls_per_minute for s in bucket.seats.values() if s.calls_per_minute]
        assert bucket.rate() == (min(limits) if limits else None)


def test_members_sitting_down_one_by_one_never_rescan_the_seats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start-up of thousands of members on one key: each new seat updates the known rate
    in place (it was a scan of all seats per newcomer, quadratic in all)."""
    bucket = _Bucket(tokens=1.0, updated=0.0)
    bucket.sit("first", 600.0, 0.0)
    assert bucket.rate() == 600.0
    scans = 0
    values = dict.values

    class CountingSeats(dict):  # type: ignore[type-arg]
        def values(self):  # type: ignore[no-untyped-def]
            nonlocal scans
            scans += 1
            return values(self)

    bucket.seats = CountingSeats(bucket.seats)
    for i in range(1000):
        bucket.sit(f"m{i}", 60.0 if i % 2 else None, float(i))
        assert bucket.rate() == 60.0 or i == 0
    assert scans == 0


def test_unlimited_keys_never_wait_and_never_stretch() -> None:
    async def scenario(vt: VirtualTime) -> tuple[float, float]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        members = [budgets.member(f"m{i}") for i in range(50)]
        for member in members:
            await member.acquire(BudgetKey("paiEas/host"))
        return vt.now, members[0].effective_interval(5.0)

    assert run(scenario) == (0.0, 5.0)


def test_leaving_and_going_stale_unstretch_the_others() -> None:
    async def scenario(vt: VirtualTime) -> list[float]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        a, b, c = (budgets.member(n) for n in "abc")
        for member in (a, b, c):
            await member.acquire(SUB_USER)
        seen = [a.effective_interval(5.0)]  # 3 x 3 s = 9 s
        b.leave()
        seen.append(a.effective_interval(5.0))  # 2 x 3 s = 6 s
        vt.now += 200.0  # c stopped without leave(); a polled recently
        await a.acquire(SUB_USER)
        seen.append(a.effective_interval(5.0))  # c dropped out: 1 x 3 s < 5 s
        return seen

    assert run(scenario) == [pytest.approx(9.0), pytest.approx(6.0), 5.0]


def test_a_changed_key_moves_the_seat() -> None:
    async def scenario(vt: VirtualTime) -> tuple[int, int]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        a, b = budgets.member("a"), budgets.member("b")
        await a.acquire(SUB_USER)
        await b.acquire(SUB_USER)
        await b.acquire(BudgetKey("modelArts/user-rotated", 20))  # b's Secret changed
        return a.sharing()[0], b.sharing()[0]

    assert run(scenario) == (1, 1)


# --- 429 pauses the whole key ----------------------------------------------------------


def test_retry_after_pauses_every_member_of_the_key() -> None:
    async def scenario(vt: VirtualTime) -> list[float]:
        budgets = RateBudgets(clock=vt.clock, sleep=vt.sleep)
        a, b = budgets.member("a"), budgets.member("b")
        key = BudgetKey("httpJson/h:80")
        await a.acquire(key)
        a.throttled(30.0)
        await b.acquire(key)  # b never saw the 429, yet waits it out
        after_b = vt.now
        await budgets.member("c").acquire(BudgetKey("other"))  # other keys are unaffected
        return [after_b, vt.now]

    assert run(scenario) == [30.0, 30.0]


def test_a_pause_longer_than_max_wait_is_reported_not_waited() -> None:
    async def scenario(vt: VirtualTime) -> DiscoveryError:
        member = RateBudgets(clock=vt.clock, sleep=vt.sleep).member("a")
        await member.acquire(SUB_USER)
        member.throttled(120.0)
        with pytest.raises(DiscoveryError) as info:
            await member.acquire(SUB_USER, max_wait=60.0)
        return info.value

    error = run(scenario)
    assert error.reason == "RateLimited"
    assert error.retry_after == pytest.approx(120.0)
    assert "modelArts/user-abc" in error.message


@pytest.mark.parametrize(
    ("retry_after", "pause"),
    [(None, DEFAULT_THROTTLE_PAUSE), (-5.0, 0.0), (1e9, MAX_THROTTLE_PAUSE), (7.0, 7.0)],
)
def test_pause_lengths_are_bounded(retry_after: float | None, pause: float) -> None:
    async def wake_time(vt: VirtualTime) -> float:
        member = RateBudgets(clock=vt.clock, sleep=vt.sleep).member("a")
        await member.acquire(BudgetKey("k"))
        vt.now = 1000.0
        member.throttled(retry_after)
        woke: list[float] = []

        async def waiter() -> None:
            await member.acquire(BudgetKey("k"), max_wait=1e9)
            woke.append(vt.now)

        await waiter()
        return woke[0]

    assert run(wake_time) == pytest.approx(1000.0 + pause)


# --- backoff ------------------------------------------------------------------------------


def test_backoff_grows_caps_and_jitters() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(5.0, n, rng) for n in range(8)]
    assert delays[0] == 5.0
    for n in range(1, 8):
        base = min(5.0 * 2 ** (n - 1), 40.0)
        assert 0.8 * base <= delays[n] <= base
    assert backoff_delay(600.0, 5, rng) <= 600.0  # long intervals cap at themselves


def test_backoff_never_undercuts_retry_after() -> None:
    rng = random.Random(1)
    assert backoff_delay(5.0, 1, rng, retry_after=120.0) == 120.0
    assert backoff_delay(5.0, 0, rng, retry_after=2.0) == 5.0
    assert backoff_delay(5.0, 1, rng, retry_after=1e9) == MAX_THROTTLE_PAUSE
