"""Carries out the plan against the emulator and the cluster, writing the book as it goes.

Emulator actions (faults on and off, instance changes, the self-test's slice deletion) run
in one thread; restarts in another, since a restart blocks for tens of seconds and the
faults must still clear on time. Both sleep on a stop event, so the soak can end early.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from kubernetes import client

from bench.env import FLEET_NS, Env, fleet_dsvc, fleet_eas
from soak.book import AnswerBook, endpoints_of
from soak.emulator import FaultingEmulator
from soak.plan import Change, FaultSpan, Plan, PlanSettings, Sabotage
from soak.watch import ReadySliceWatcher

Action = tuple[float, int, Callable[[], None]]  # (seconds since origin, tie order, what)


@dataclass(frozen=True)
class SabotageRecord:
    service: str
    at: float
    slices: tuple[str, ...]


@dataclass
class EmulatorChaos:
    """Faults and instance changes, at the plan's times after `origin` (time.time())."""

    env: Env
    emulator: FaultingEmulator
    watcher: ReadySliceWatcher
    book: AnswerBook
    plan: Plan
    settings: PlanSettings
    origin: float
    instances: dict[int, list[dict[str, Any]]]  # current answer per service index
    errors: list[str] = field(default_factory=list)
    sabotaged: SabotageRecord | None = None
    _active: dict[FaultSpan, tuple[int, int]] = field(default_factory=dict)  # book index, id

    def actions(self) -> list[Action]:
        out: list[Action] = []
        for span in self.plan.faults:
            # Clears sort before injections at the same time: the plan never overlaps them.
            out.append((span.at, 2, partial(self._fault_on, span)))
            out.append((span.until, 0, partial(self._fault_off, span)))
        out.extend((c.at, 1, partial(self._change, c)) for c in self.plan.changes)
        if self.plan.sabotage is not None:
            sabotage = self.plan.sabotage
            out.append((sabotage.at, 3, partial(self._sabotage, sabotage)))
        return sorted(out, key=lambda a: (a[0], a[1]))

    def run(self, stop: threading.Event) -> None:
        try:
            for at, _, action in self.actions():
                if stop.wait(max(0.0, self.origin + at - time.time())):
                    return
                try:
                    action()
                except Exception as exc:  # note it and carry on: the book says what happened
                    self.errors.append(f"{time.time() - self.origin:.1f}s: {exc!r}")
        finally:
            self.clear_all()

    def clear_all(self) -> None:
        for span in list(self._active):
            self._fault_off(span)

    def _fault_on(self, span: FaultSpan) -> None:
        linger = self.settings.delay_seconds if span.mode == "delay" else 0.0
        index = self.book.fault_on(fleet_dsvc(span.service), time.time(), linger)
        fault_id = self.emulator.add_fault(span.admin_body(self.settings.delay_seconds))
        self._active[span] = (index, fault_id)

    def _fault_off(self, span: FaultSpan) -> None:
        found = self._active.pop(span, None)
        if found is None:
            return
        index, fault_id = found
        self.emulator.delete_fault(fault_id)
        self.book.fault_off(fleet_dsvc(span.service), index, time.time())

    def _change(self, change: Change) -> None:
        current = self.instances[change.service]
        if change.add is not None:
            current.append({"ip": change.add, "port": 8000, "weight": 100})
        if change.remove is not None:
            current[:] = [i for i in current if i["ip"] != change.remove]
        called = time.time()
        self.emulator.put_service(fleet_eas(change.service), current)
        self.book.version(fleet_dsvc(change.service), called, time.time(), endpoints_of(current))

    def _sabotage(self, sabotage: Sabotage) -> None:
        """The self-test: delete a service's slices behind the operator's back."""
        service = fleet_dsvc(sabotage.service)
        names = tuple(sorted(self.watcher.slices_of(FLEET_NS, service)))
        api = client.DiscoveryV1Api(self.env.api)
        at = time.time()
        for name in names:
            api.delete_namespaced_endpoint_slice(name, FLEET_NS)
        self.sabotaged = SabotageRecord(service, at, names)
        print(f"  self-test: deleted {len(names)} slice(s) of {service}", flush=True)
