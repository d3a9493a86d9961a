"""The health checker's scheduling, in virtual time with a scripted prober.

A FakeClock stands in for the loop's clock and timers; the checker code runs unchanged. The
prober answers from a script (pass or fail per target) or holds its checks until the test
releases them, and counts what ran at once. One test at the end runs the real clock and the
real TCP probe against loopback.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import EndpointId
from directservice.health.checker import BATCH, HealthChecker
from directservice.health.probe import ProbeResult
from directservice.obs import metrics

pytestmark = pytest.mark.unit

SPEC = HealthCheckSpec(interval=1.0, timeout=0.5, unhealthy_threshold=3, healthy_threshold=2)
A, B, C = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)


@dataclass
class _Timer:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Virtual time: timers run only when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.turns = 0  # timer callbacks run so far
        self._timers: list[tuple[float, int, _Timer, Callable[[], object]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> _Timer:
        timer = _Timer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback))
        return timer

    def stall(self, seconds: float) -> None:
        """Time passes and no timer runs: the loop was busy elsewhere."""
        self.now += seconds

    async def advance(self, seconds: float) -> None:
        """Run every timer due up to now + seconds, in order, letting the loop settle
        (finished checks report back) before each."""
        end = self.now + seconds
        while True:
            await settle()
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers or self._timers[0][0] > end:
                break
            when, _, _, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            self.turns += 1
            callback()
        self.now = end
        await settle()


async def settle() -> None:
    for _ in range(20):  # enough turns for done-callbacks and probe tasks to report back
        await asyncio.sleep(0)


class ScriptedProber:
    """Passes unless the target is in `failing`; with `hold`, checks wait to be released."""

    def __init__(self, clock: FakeClock, hold: bool = False) -> None:
        self.clock = clock
        self.hold = hold
        self.failing: set[EndpointId] = set()
        self.calls: list[tuple[float, EndpointId, int]] = []  # (time, target, clock turn)
        self.pending: list[tuple[EndpointId, asyncio.Future[ProbeResult]]] = []
        self.running = 0
        self.most_running = 0

    def __call__(
        self, target: EndpointId, tls: bool, spec: HealthCheckSpec
    ) -> Awaitable[ProbeResult]:
        self.calls.append((self.clock.now, target, self.clock.turns))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        check: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        check.add_done_callback(self._ended)
        if self.hold:
            self.pending.append((target, check))
        else:
            check.set_result(self._verdict(target))
        return check

    def _ended(self, _: object) -> None:
        self.running -= 1

    def _verdict(self, target: EndpointId) -> ProbeResult:
        return ProbeResult(False, "refused") if target in self.failing else ProbeResult(True, "ok")

    def release(self, count: int | None = None) -> int:
        """Lets the `count` oldest held checks (all by default) finish; returns how many."""
        cut = len(self.pending) if count is None else count
        batch, self.pending = self.pending[:cut], self.pending[cut:]
        for target, check in batch:
            if not check.done():
                check.set_result(self._verdict(target))
        return len(batch)

    def times_of(self, target: EndpointId) -> list[float]:
        return [when for when, t, _ in self.calls if t == target]


class Changes:
    """An on_change callback that counts its calls and what failing() said each time."""

    def __init__(self, checker: HealthChecker, key: str) -> None:
        self.seen: list[frozenset[EndpointId]] = []
        self._checker, self._key = checker, key

    def __call__(self) -> None:
        self.seen.append(self._checker.failing(self._key))


def scenario(body: Callable[[FakeClock], Awaitable[Any]]) -> Any:
    return asyncio.run(body(FakeClock()))


def test_thresholds_take_a_target_out_and_bring_it_back_with_one_call_each() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        changes = Changes(checker, "ns/a")
        prober.failing.add(A)
        checker.watch("ns/a", SPEC, {A: False, B: False}, changes)
        assert checker.failing("ns/a") == frozenset()  # new targets start healthy
        await clock.advance(1.0)  # first check of each, within one interval
        assert len(prober.times_of(A)) == 1
        await clock.advance(1.0)
        assert checker.failing("ns/a") == frozenset() and changes.seen == []
        await clock.advance(1.0)  # the third consecutive failure
        assert checker.failing("ns/a") == {A}
        assert changes.seen == [frozenset({A})]
        await clock.advance(5.0)  # failing on: no further call
        assert changes.seen == [frozenset({A})]
        prober.failing.clear()
        await clock.advance(1.0)  # one pass is not enough
        assert checker.failing("ns/a") == {A}
        await clock.advance(1.0)
        assert checker.failing("ns/a") == frozenset()
        assert changes.seen == [frozenset({A}), frozenset()]
        await checker.close()

    scenario(body)


def test_checks_keep_their_phase_one_interval_apart() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        start = clock.now
        checker.watch("ns/a", SPEC, {A: False}, Changes(checker, "ns/a"))
        await clock.advance(10.0)
        times = prober.times_of(A)
        assert start <= times[0] < start + SPEC.interval
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(times) == 10
        assert all(gap == pytest.approx(SPEC.interval) for gap in gaps), gaps
        await checker.close()

    scenario(body)


def test_first_checks_of_thousands_of_new_targets_are_spread_over_the_interval() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, max_in_flight=10_000, clock=clock)
        spec = replace(SPEC, interval=5.0)
        start = clock.now
        for service in range(20):  # 20 services of 100 instances, given at the same moment
            targets = {(f"10.1.{service}.{i}", 8080): False for i in range(100)}
            checker.watch(f"ns/s{service}", spec, targets, Changes(checker, f"ns/s{service}"))
        await clock.advance(spec.interval)
        first: dict[EndpointId, float] = {}
        for when, target, _ in prober.calls:
            first.setdefault(target, when)
        assert len(first) == 2000
        assert all(start <= when < start + spec.interval for when in first.values())
        tenths = Counter(int((when - start) / (spec.interval / 10)) for when in first.values())
        assert len(tenths) == 10
        assert max(tenths.values()) <= 260, tenths  # 200 each if perfectly even
        await checker.close()

    scenario(body)


def test_after_a_stall_the_due_checks_start_a_batch_per_turn_of_the_loop() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, max_in_flight=10_000, clock=clock)
        lateness_before = _sample("directservice_health_check_lateness_seconds_count")
        targets = {(f"10.2.0.{i}", port): False for i in range(250) for port in (80, 81)}
        checker.watch("ns/a", SPEC, targets, Changes(checker, "ns/a"))
        clock.stall(SPEC.interval)  # all 500 are due at once
        await clock.advance(0.0)
        assert len({target for _, target, _ in prober.calls}) == 500
        per_turn = Counter(turn for _, _, turn in prober.calls)
        assert max(per_turn.values()) == BATCH
        late = _sample("directservice_health_check_lateness_seconds_count") - lateness_before
        assert late >= 500
        await checker.close()

    scenario(body)


def test_the_concurrency_cap_is_never_exceeded_and_waiting_checks_start_late() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock, hold=True)
        checker = HealthChecker(prober, max_in_flight=4, clock=clock)
        lateness_before = _sample("directservice_health_check_lateness_seconds_sum")
        targets = {(f"10.3.0.{i}", 80): False for i in range(50)}
        checker.watch("ns/a", SPEC, targets, Changes(checker, "ns/a"))
        await clock.advance(SPEC.interval)  # all 50 are due now
        assert len(prober.calls) == 4 and checker.in_flight == 4
        while len(prober.calls) < 50:
            assert prober.release(2) == 2
            await clock.advance(0.1)
            assert checker.in_flight <= 4
        assert prober.most_running == 4
        assert len({target for _, target, _ in prober.calls}) == 50
        assert _sample("directservice_health_check_lateness_seconds_sum") > lateness_before
        await checker.close()

    scenario(body)


def test_replacing_targets_keeps_the_state_of_those_that_stay() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        changes = Changes(checker, "ns/a")
        prober.failing.add(A)
        checker.watch("ns/a", SPEC, {A: False, B: False}, changes)
        await clock.advance(3.0)
        assert checker.failing("ns/a") == {A}
        checker.watch("ns/a", SPEC, {A: False, C: False}, changes)
        assert checker.failing("ns/a") == {A}  # kept, with no call: the caller knows
        b_checks = len(prober.times_of(B))
        await clock.advance(3.0)
        assert len(prober.times_of(B)) == b_checks  # forgotten
        assert len(prober.times_of(C)) == 3
        assert changes.seen == [frozenset({A})]
        await checker.close()

    scenario(body)


def test_watching_the_same_targets_again_keeps_their_counts_and_their_schedule() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        changes = Changes(checker, "ns/a")
        prober.failing.add(A)
        checker.watch("ns/a", SPEC, {A: False}, changes)
        await clock.advance(2.0)  # two failures of the three that take A out
        assert prober.times_of(A) and checker.failing("ns/a") == frozenset()
        before = prober.times_of(A)
        checker.watch("ns/a", SPEC, {A: False}, changes)  # every poll gives the targets again
        await clock.advance(1.0)
        assert checker.failing("ns/a") == {A}  # the third consecutive failure
        assert len(prober.times_of(A)) == len(before) + 1  # no extra check
        await checker.close()

    scenario(body)


def test_a_changed_spec_reschedules_and_keeps_the_verdict() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        changes = Changes(checker, "ns/a")
        prober.failing.add(A)
        checker.watch("ns/a", SPEC, {A: False}, changes)
        await clock.advance(3.0)
        assert checker.failing("ns/a") == {A}
        slower = replace(SPEC, interval=4.0, healthy_threshold=1)
        checker.watch("ns/a", slower, {A: False}, changes)
        assert checker.failing("ns/a") == {A}
        seen = len(prober.times_of(A))
        await clock.advance(8.0)
        assert len(prober.times_of(A)) - seen == 2  # at the new interval
        prober.failing.clear()
        await clock.advance(4.0)  # the new threshold: one pass brings it back
        assert checker.failing("ns/a") == frozenset()
        assert changes.seen == [frozenset({A}), frozenset()]
        await checker.close()

    scenario(body)


def test_unwatch_stops_checks_and_ignores_a_result_in_flight() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock, hold=True)
        checker = HealthChecker(prober, clock=clock)
        changes = Changes(checker, "ns/a")
        prober.failing.add(A)
        checker.watch("ns/a", replace(SPEC, unhealthy_threshold=1), {A: False}, changes)
        await clock.advance(1.0)
        assert len(prober.pending) == 1
        checker.unwatch("ns/a")
        prober.release()
        await clock.advance(5.0)
        assert len(prober.calls) == 1 and changes.seen == []
        assert checker.failing("ns/a") == frozenset() and checker.in_flight == 0
        await checker.close()

    scenario(body)


def test_services_are_independent_and_each_hears_only_its_own_changes() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock)
        checker = HealthChecker(prober, clock=clock)
        first, second = Changes(checker, "ns/a"), Changes(checker, "ns/b")
        prober.failing.update({A, B})
        checker.watch("ns/a", SPEC, {A: False, B: False, C: False}, first)
        checker.watch("ns/b", SPEC, {C: False}, second)
        await clock.advance(3.0)
        assert checker.failing("ns/a") == {A, B} and checker.failing("ns/b") == frozenset()
        assert len(first.seen) == 2 and first.seen[-1] == {A, B}  # one call per transition
        assert second.seen == []
        await checker.close()

    scenario(body)


def test_a_probe_that_raises_counts_as_a_failure_and_the_checker_carries_on() -> None:
    async def body(clock: FakeClock) -> None:
        calls = Counter[EndpointId]()

        async def broken(target: EndpointId, tls: bool, spec: HealthCheckSpec) -> ProbeResult:
            calls[target] += 1
            raise RuntimeError("bug in a probe")

        checker = HealthChecker(broken, clock=clock)
        changes = Changes(checker, "ns/a")
        checker.watch("ns/a", SPEC, {A: False}, changes)
        await clock.advance(4.0)
        assert calls[A] == 4
        assert checker.failing("ns/a") == {A} and changes.seen == [frozenset({A})]
        await checker.close()

    scenario(body)


def test_close_cancels_checks_in_flight_and_refuses_new_targets() -> None:
    async def body(clock: FakeClock) -> None:
        prober = ScriptedProber(clock, hold=True)
        checker = HealthChecker(prober, clock=clock)
        checker.watch("ns/a", SPEC, {A: False, B: False}, Changes(checker, "ns/a"))
        await clock.advance(1.0)
        assert checker.in_flight == 2
        await checker.close()
        assert checker.in_flight == 0
        assert all(check.cancelled() for _, check in prober.pending)
        with pytest.raises(RuntimeError):
            checker.watch("ns/a", SPEC, {A: False}, Changes(checker, "ns/a"))

    scenario(body)


def test_real_clock_and_tcp_probe_find_a_closed_port_and_spare_an_open_one() -> None:
    async def body() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        closed = socket.socket()  # bound, never listening: connecting is refused
        closed.bind(("127.0.0.1", 0))
        open_port = server.sockets[0].getsockname()[1]
        closed_port = closed.getsockname()[1]
        checker = HealthChecker()
        changed = asyncio.Event()
        spec = HealthCheckSpec(interval=0.05, timeout=1.0, unhealthy_threshold=2)
        targets = {("127.0.0.1", open_port): False, ("127.0.0.1", closed_port): False}
        checker.watch("ns/a", spec, targets, changed.set)
        passes = _sample("directservice_health_checks_total", kind="tcp", result="pass")
        await asyncio.wait_for(changed.wait(), timeout=10)
        assert checker.failing("ns/a") == {("127.0.0.1", closed_port)}
        assert _sample("directservice_health_checks_total", kind="tcp", result="pass") > passes
        await checker.close()
        server.close()
        closed.close()

    asyncio.run(body())


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0
