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

The operator runs the checker on a thread of its own (`start_thread`), with its own event
loop: about half of a TCP check's cost is system calls (socket, connect, close), which let
go of the GIL, so on a second core they no longer delay the polls. A lock serialises the
poll loop's `watch`/`unwatch` with the checker thread; each holds it only for in-memory work
and the non-blocking start of a probe. Without `start_thread` the checker runs on the
calling loop, as the unit tests drive it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from directservice.api.spec import HealthCheckSpec, ProbeKind
from directservice.core.health import HEALTHY, EndpointId, TargetHealth, record
from directservice.health.probe import Prober, ProbeResult, probe
from directservice.obs import metrics

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
        self._lock = threading.RLock()  # RLock: a same-loop on_change may call watch
        self._loop: asyncio.AbstractEventLoop | None = None  # set by start_thread
        self._thread: threading.Thread | None = None
        # Labelled children resolved once: labels() costs more than the increment itself.
        self._outcomes = {
            (kind.value, ok): metrics.HEALTH_CHECKS.labels(kind.value, "pass" if ok else "fail")
            for kind in ProbeKind
            for ok in (True, False)
        }
        self._durations = {
            kind.value: metrics.HEALTH_CHECK_DURATION.labels(kind.value) for kind in ProbeKind
        }

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
        with self._lock:
            if self._closed:
                raise RuntimeError("the health checker is closed")
            on_change = self._on_callers_loop(on_change)
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
        self._wake_from_caller()

    def unwatch(self, key: str) -> None:
        with self._lock:
            watched = self._watched.pop(key, None)
            if watched is not None:
                for target in watched.targets.values():
                    _forget(target)

    def failing(self, key: str) -> frozenset[EndpointId]:
        """The targets of `key` currently unhealthy (empty for a key not watched)."""
        watched = self._watched.get(key)
        return watched.failing if watched is not None else frozenset()

    def start_thread(self) -> None:
        """Runs the checks from now on on a daemon thread with its own event loop."""
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="health-checks", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        """Stops scheduling and cancels the checks in flight, waiting for them to end (and
        for the checker's thread, when it has one)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            await self._close_here()
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._close_here(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        loop.close()
        self._thread = None

    async def _close_here(self) -> None:
        with self._lock:
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
        """The injected clock, else the checker thread's loop, else the running loop's
        (looked up each time, not kept: a checker made before the loop started never holds
        on to another loop)."""
        if self._clock is not None:
            return self._clock
        return self._loop if self._loop is not None else asyncio.get_running_loop()

    def _on_checker_thread(self) -> bool:
        return self._thread is None or threading.current_thread() is self._thread

    def _on_callers_loop(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """`on_change` as the checker thread must call it: on the loop of whoever watched."""
        if self._on_checker_thread():
            return on_change
        callers = asyncio.get_running_loop()

        def hop() -> None:
            callers.call_soon_threadsafe(on_change)

        return hop

    def _wake_from_caller(self) -> None:
        """Arms the timer from `watch`: a loop's timers may be touched only on its thread."""
        loop = self._loop
        if loop is None or self._on_checker_thread():
            with self._lock:
                self._wake()
        else:
            loop.call_soon_threadsafe(self._locked_wake)

    def _locked_wake(self) -> None:
        with self._lock:
            self._wake()

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
        with self._lock:
            self._dispatch_due()

    def _dispatch_due(self) -> None:
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
        metrics.HEALTH_CHECK_LATENESS.observe(max(0.0, now - target.due))
        check: asyncio.Future[ProbeResult]
        try:
            check = asyncio.ensure_future(self._prober(target.endpoint, target.tls, spec))
        except Exception:
            log.exception("health probe of %s:%s failed to start", *target.endpoint)
            check = asyncio.get_running_loop().create_future()
            check.set_result(PROBE_ERROR)
        self._running.add(check)
        metrics.HEALTH_CHECKS_IN_FLIGHT.inc()
        check.add_done_callback(lambda done: self._finished(target, spec, now, done))

    def _finished(
        self,
        target: _Target,
        spec: HealthCheckSpec,
        started: float,
        check: asyncio.Future[ProbeResult],
    ) -> None:
        with self._lock:
            self._running.discard(check)
            metrics.HEALTH_CHECKS_IN_FLIGHT.dec()
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
            self._outcomes[(spec.kind.value, result.ok)].inc()
            self._durations[spec.kind.value].observe(now - started)
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
