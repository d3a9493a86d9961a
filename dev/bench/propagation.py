"""Scenario 2: how long the operator takes from a changed discovery answer to the slice write.

With the fleet loaded, one extra "probe" service changes its instance list `changes` times,
each at a random moment. Delay = when the bench's EndpointSlice watch delivered the slice
holding the new address - when the emulator sent the answer that first carried it (its
request log records the send time). That is the operator's own overhead (parse, plan,
write) plus the API server and watch delivery, not the wait for the next poll.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from bench.cluster import SliceEvent, create_all, delete_dsvc, dsvc_manifest
from bench.env import FLEET_NS, Env, Settings, wait_for
from bench.stats import (
    OPERATOR_RESOURCES,
    Summary,
    by_resource,
    naive_writes,
    write_delta,
)

PROBE = "probe"
PROBE_EAS = "probe_eas"


@dataclass(frozen=True)
class Change:
    put_start: float
    put_done: float
    event_at: float | None


@dataclass(frozen=True)
class PropagationResult:
    fleet: int
    probe_interval: float
    changes: int
    observed: int
    matched: int
    ambiguous: int  # changes with more than one poll answered before the write was seen
    delay_ms: Summary  # answer sent → watch event
    change_to_event_ms: Summary  # emulator changed → watch event (includes the poll wait)
    slice_events: int
    writes: dict[str, int]
    naive: int


def _instances(rotating: str) -> list[dict[str, object]]:
    fixed = [f"10.250.0.{j}" for j in range(1, 10)]
    return [{"ip": ip, "port": 8000, "weight": 100} for ip in [*fixed, rotating]]


def _holds(address: str) -> Callable[[SliceEvent], bool]:
    return lambda e: e.service == PROBE and address in e.addresses


def run_propagation(env: Env, fleet: int, s: Settings) -> PropagationResult:
    rng = random.Random(s.seed)
    env.emulator.put_service(PROBE_EAS, _instances("10.251.255.254"))
    interval = f"{s.probe_interval:g}s"
    create_all(env.api, [dsvc_manifest(PROBE, FLEET_NS, env.emulator.url, PROBE_EAS, interval)])
    if not wait_for(lambda: env.watcher.services_with(FLEET_NS, 10) > fleet, 60, 0.2):
        raise RuntimeError("the probe service was never published")
    env.wait_quiet(quiet=max(2.0, 2 * s.probe_interval), timeout=60)

    before = env.requests()
    mark = env.watcher.mark()
    changes: list[Change] = []
    for k in range(s.changes):
        time.sleep(rng.uniform(0.0, s.probe_interval))  # a random phase against the timer
        address = f"10.251.{k // 250}.{k % 250 + 1}"
        event_mark = env.watcher.mark()
        put_start = time.time()
        env.emulator.put_service(PROBE_EAS, _instances(address))
        put_done = time.time()
        event = env.watcher.wait_event(
            _holds(address), event_mark, timeout=10 + 3 * s.probe_interval
        )
        changes.append(Change(put_start, put_done, None if event is None else event.at))
        if (k + 1) % 50 == 0:
            print(f"    {k + 1}/{s.changes} changes", flush=True)
    time.sleep(1.0)
    writes = write_delta(before, env.requests(), OPERATOR_RESOURCES)
    events = [e for e in env.watcher.since(mark) if e.service == PROBE]
    sent = sorted(float(r["time"]) for r in env.emulator.log(PROBE_EAS))

    delays: list[float] = []
    waits: list[float] = []
    ambiguous = 0
    for change in changes:
        if change.event_at is None:
            continue
        waits.append(change.event_at - change.put_done)
        # The answer that caused the write: the last one sent before the event arrived,
        # and necessarily after the emulator started changing the list.
        answers = [t for t in sent if change.put_start <= t <= change.event_at]
        if not answers:
            continue
        ambiguous += len(answers) > 1
        delays.append(change.event_at - answers[-1])

    delete_dsvc(env.api, FLEET_NS, PROBE)
    wait_for(lambda: not env.watcher.slices_of(FLEET_NS, PROBE), 60, 0.2)
    env.emulator.delete_service(PROBE_EAS)
    return PropagationResult(
        fleet=fleet,
        probe_interval=s.probe_interval,
        changes=len(changes),
        observed=sum(1 for c in changes if c.event_at is not None),
        matched=len(delays),
        ambiguous=ambiguous,
        delay_ms=Summary.of(delays).scaled(1000),
        change_to_event_ms=Summary.of(waits).scaled(1000),
        slice_events=len(events),
        writes=by_resource(writes),
        naive=len(changes) * naive_writes(1, 1),
    )
