"""One scheduler of active health checks for every DirectService of the process.

All targets share one heap of due times and one timer handle: 10,000 targets cost 10,000
heap entries, not 10,000 sleeping tasks. When the timer fires, every check due within
`RESOLUTION` starts (at most `BATCH` per turn of the loop, so a crowd of due checks never
holds the loop for long), as long as fewer than `max_in_flight` checks are running;
the others wait in the heap and start as soon as a check finishes and frees a slot.
How late each check starts is observed in directservice_health_check_lateness_seconds.

A target's next check is due one interval after its previous due time (no drift), or at
once when that moment has passed while the check ran or waited for a slot.

`on_change` is called when checks change the failing set of a DirectService, once per
change, on the loop that called `watch`. `watch` and `unwatch` never call it: their caller
reads `failing()` afterwards, which already reflects the targets it just gave.

The operator runs the checker in a child process (process.py), whose loop it has to itself;
the counts it keeps go through `counts` (counts.py) to the parent's /metrics.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import HEALTHY, EndpointId, TargetHealth, record
from directservice.health.counts import CheckCounts, Exported
from directservice.health.probe import Prober, ProbeResult, probe

log = logging.getLogger(__name__)

RESOLUTION = 0.005  # s: checks due this close together start in the same turn
BATCH = 64  # checks started per turn of the loop at most
PROBE_ERROR = ProbeResult(False, "probe error")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """What the checker needs of the event loop's clock (an asyncio loop is one)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Cancellable: ...


class Checks(Protocol):
    """What the poll loops use of a checker: HealthChecker, or CheckerProcess (process.py),
    which runs one in a child process."""

    def watch(
        self,
        key: str,
        spec: HealthCheckSpec,
        targets: Mapping[EndpointId, bool],
        on_change: Callable[[], None],
    ) -> None: ...

    def unwatch(self, key: str) -> None: ...

    def failing(self, key: str) -> frozenset[EndpointId]: ...


@dataclass(eq=False)
class _Watched:
    """One DirectService: its spec, its callback, its targets and the failing ones."""

    spec: HealthCheckSpec
    on_change: Callable[[], None]
    key: str = ""  # the DirectService, for the transition's log line
    targets: dict[EndpointId, _Target] = field(default_factory=dict)
    failing: frozenset[EndpointId] = frozenset()


@dataclass(eq=False, slots=True)
class _Target:
    owner: _Watched
    endpoint: EndpointId
    tls: bool
    state: TargetHealth
    due: float = 0.0
    ticket: int = -1  # the heap entry that is current; -1: running, or forgotten
    live: bool = True


class HealthChecker:
    """Schedules the checks of every watched target; see the module docstring."""

    def __init__(
        self,
        prober: Prober = probe,
        *,
        max_in_flight: int = 4096,
        clock: Clock | None = None,
        counts: CheckCounts | None = None,
    ) -> None:
        self._prober = prober
        self._max_in_flight = max(1, max_in_flight)
        self._clock = clock
        self._watched: dict[str, _Watched] = {}
        self._heap: list[tuple[float, int, _Target]] = []
        self._tickets = 0
        self._timer: Cancellable | None = None
        self._timer_at = 0.0
        self._running: set[asyncio.Future[ProbeResult]] = set()
        self._closed = False
        self._counts = counts if counts is not None else Exported()

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def watch(
        self,
        key: str,
        spec: HealthCheckSpec,
        targets: Mapping[EndpointId, bool],
        on_change: Callable[[], None],
    ) -> None:
        """Sets the targets of `key` (value: use TLS). Targets it already had keep their
        state; new ones start healthy, first checked within one interval; a changed spec
        or TLS flag reschedules a target and keeps its verdict."""
        if self._closed:
            raise RuntimeError("the health checker is closed")
        now = self._now()
        old = self._watched.get(key)
        watched = _Watched(spec, on_change, key)
        if old is not None and old.spec == spec:
            watched = old
            watched.on_change = on_change
        previous = dict(old.targets) if old is not None else {}
        watched.targets = {}
        for endpoint, tls in targets.items():
            prev = previous.pop(endpoint, None)
            if prev is not None and prev.owner is watched and prev.tls == tls:
                watched.targets[endpoint] = prev
                continue
            state = HEALTHY
            if prev is not None:
                state = TargetHealth(healthy=prev.state.healthy)  # another probe: recount
                _forget(prev)
            target = _Target(watched, endpoint, tls, state)
            watched.targets[endpoint] = target
            self._schedule(target, now + _phase(key, endpoint, _interval(spec)))
        for gone in previous.values():
            _forget(gone)
        failing = (e for e, t in watched.targets.items() if not t.state.healthy)
        watched.failing = frozenset(failing)
        self._watched[key] = watched
        self._wake()

    def unwatch(self, key: str) -> None:
        watched = self._watched.pop(key, None)
        if watched is not None:
            for target in watched.targets.values():
                _forget(target)

    def failing(self, key: str) -> frozenset[EndpointId]:
        """The targets of `key` currently unhealthy (empty for a key not watched)."""
        watched = self._watched.get(key)
        return watched.failing if watched is not None else frozenset()

    async def close(self) -> None:
        """Stops scheduling and cancels the checks in flight, waiting for them to end."""
        self._shut()
        running = list(self._running)
        for check in running:
            check.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def _shut(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self._watched):
            self.unwatch(key)
        self._heap.clear()

    # The scheduler.

    def _timer_clock(self) -> Clock:
        """The injected clock, else the running loop's (looked up each time, not kept: a
        checker made before the loop started never holds on to another loop)."""
        return self._clock if self._clock is not None else asyncio.get_running_loop()

    def _now(self) -> float:
        return self._timer_clock().time()

    def _schedule(self, target: _Target, due: float) -> None:
        self._tickets += 1
        target.due = due
        target.ticket = self._tickets
        heapq.heappush(self._heap, (due, self._tickets, target))

    def _wake(self) -> None:
        """Arms the timer for the earliest entry, unless it is armed as early already."""
        if self._closed or not self._heap:
            return
        when = self._heap[0][0]
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._timer_clock().call_at(when, self._dispatch)

    def _dispatch(self) -> None:
        self._timer = None
        now = self._now()
        horizon = now + RESOLUTION
        heap = self._heap
        started = 0
        while heap and len(self._running) < self._max_in_flight:
            due, ticket, target = heap[0]
            if target.ticket != ticket:
                heapq.heappop(heap)  # rescheduled or forgotten since
                continue
            if due > horizon:
                break
            if started == BATCH:  # more are due: the next turn, after other callbacks
                self._timer_at = now
                self._timer = self._timer_clock().call_at(now, self._dispatch)
                return
            heapq.heappop(heap)
            self._start(target, now)
            started += 1
        if len(self._running) < self._max_in_flight:
            self._wake()  # else the next finished check wakes the scheduler

    def _start(self, target: _Target, now: float) -> None:
        target.ticket = -1
        spec = target.owner.spec
        self._counts.started(now - target.due)
        check: asyncio.Future[ProbeResult]
        try:
            check = asyncio.ensure_future(self._prober(target.endpoint, target.tls, spec))
        except Exception:
            log.exception("health probe of %s:%s failed to start", *target.endpoint)
            check = asyncio.get_running_loop().create_future()
            check.set_result(PROBE_ERROR)
        self._running.add(check)
        check.add_done_callback(lambda done: self._finished(target, spec, now, done))

    def _finished(
        self,
        target: _Target,
        spec: HealthCheckSpec,
        started: float,
        check: asyncio.Future[ProbeResult],
    ) -> None:
        self._running.discard(check)
        self._counts.ended()
        if self._closed:
            return
        now = self._now()
        if check.cancelled():  # not by close(): says nothing about the target, check again
            if target.live:
                self._schedule(target, max(target.due + _interval(spec), now))
            self._wake()
            return
        if (error := check.exception()) is not None:
            log.error("health probe of %s:%s raised", *target.endpoint, exc_info=error)
            result = PROBE_ERROR
        else:
            result = check.result()
        self._counts.judged(spec.kind, result.ok, now - started)
        if target.live:
            self._schedule(target, max(target.due + _interval(spec), now))
            before = target.state.healthy
            target.state = record(target.state, result.ok, spec)
            if target.state.healthy != before:
                self._log_transition(target, result)
                self._transition(target)
        self._wake()

    def _log_transition(self, target: _Target, result: ProbeResult) -> None:
        ip, port = target.endpoint
        spec = target.owner.spec
        if target.state.healthy:
            log.info("[%s] %s:%s healthy again after %d passed checks", target.owner.key, ip,
                     port, spec.healthy_threshold)  # fmt: skip
        else:
            log.info("[%s] %s:%s unhealthy after %d failed checks: %s", target.owner.key, ip,
                     port, spec.unhealthy_threshold, result.reason)  # fmt: skip

    def _transition(self, target: _Target) -> None:
        watched = target.owner
        if target.state.healthy:
            watched.failing = watched.failing - {target.endpoint}
        else:
            watched.failing = watched.failing | {target.endpoint}
        try:
            watched.on_change()
        except Exception:
            log.exception("health on_change callback raised")


def _forget(target: _Target) -> None:
    target.live = False
    target.ticket = -1


def _interval(spec: HealthCheckSpec) -> float:
    return max(spec.interval, RESOLUTION)


def _phase(key: str, endpoint: EndpointId, interval: float) -> float:
    """A stable offset within the interval, well spread over targets and services, so
    thousands of targets given at once (operator start) are not checked all at once."""
    digest = zlib.crc32(f"{key}\0{endpoint[0]}\0{endpoint[1]}".encode())
    return interval * digest / 2**32
