"""One DirectService's traffic state between polls: health verdicts, drains and exclusions.

It turns the last accepted answer into the endpoints to publish (core/endpoints.py), keeps
the health checker watching exactly the instances discovery lists, and asks its reconciler
for a re-publish (`on_change`) when a health verdict turns or a drain ends: those are the
only writes health and draining cause, one per transition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from directservice.api.names import Owner
from directservice.api.spec import DirectServiceSpec, HealthCheckSpec
from directservice.core.endpoints import (
    Composition,
    Drain,
    EndpointId,
    Traffic,
    checked,
    compose,
    update_drains,
)
from directservice.core.health import in_panic
from directservice.core.model import Instance, PublishedSlice
from directservice.health.checker import Checks
from directservice.obs import metrics

DRAIN_TIMER_SLACK = 0.01


@dataclass(frozen=True)
class Outcome:
    composition: Composition
    panic: bool | None  # None: no health checks configured


@dataclass
class TrafficState:
    owner: Owner
    checker: Checks | None
    on_change: Callable[[], None]
    drains: tuple[Drain, ...] = ()
    panic: bool | None = None
    _adopted: bool = False  # terminating endpoints found at start have been taken over
    _watching: tuple[HealthCheckSpec, dict[EndpointId, bool]] | None = None
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def plan(
        self,
        spec: DirectServiceSpec,
        instances: Sequence[Instance],
        published: Sequence[PublishedSlice],
        now: float,
    ) -> Outcome:
        """The endpoints to publish now for the last accepted answer `instances`."""
        self.drains = update_drains(
            self.drains,
            published,
            instances,
            now=now,
            drain_seconds=spec.drain_seconds,
            adopt=not self._adopted,
        )
        self._adopted = True
        failing, self.panic = self._health(spec, instances)
        composition = compose(
            instances,
            Traffic(
                failing=failing, panic=bool(self.panic), exclude=spec.exclude, draining=self.drains
            ),
        )
        self._schedule_drain_end()
        labels = (self.owner.namespace, self.owner.name)
        metrics.UNHEALTHY_ENDPOINTS.set(*labels, len(failing))
        metrics.HEALTH_PANIC.set(*labels, 1 if self.panic else 0)
        metrics.DRAINING_ENDPOINTS.set(*labels, len(self.drains))
        return Outcome(composition, self.panic)

    def _health(
        self, spec: DirectServiceSpec, instances: Sequence[Instance]
    ) -> tuple[frozenset[EndpointId], bool | None]:
        check = spec.health_check
        if check is None or self.checker is None:
            self._unwatch()
            return frozenset(), None
        targets = {
            (inst.ip, inst.port): inst.scheme == "https"
            for inst in checked(instances, spec.exclude)
        }
        if self._watching != (check, targets):  # a poll that changes nothing costs nothing
            self.checker.watch(self.owner.key, check, targets, self.on_change)
            self._watching = (check, targets)
        failing = self.checker.failing(self.owner.key) & targets.keys()
        return frozenset(failing), in_panic(
            len(failing), len(targets), check.panic_threshold_percent
        )

    def _schedule_drain_end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.drains:
            loop = asyncio.get_running_loop()
            # A little after the deadline: the loop may run a timer up to its clock
            # resolution early, and a drain that has not quite ended would re-arm at once.
            first_end = min(d.until for d in self.drains) + DRAIN_TIMER_SLACK
            self._timer = loop.call_at(first_end, self.on_change)

    def _unwatch(self) -> None:
        if self._watching is not None and self.checker is not None:
            self.checker.unwatch(self.owner.key)
        self._watching = None

    def close(self) -> None:
        self._unwatch()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
