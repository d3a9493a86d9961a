"""Scenario 1 and 4: a fleet of N DirectServices in steady state.

Per fleet size: create the DirectServices, start a fresh operator, wait until every
service was polled, published and reported healthy and the API server has seen no write
from the operator for a while, then measure a window of `duration` seconds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import procfs
from bench.cluster import (
    create_all,
    dsvc_manifest,
    ensure_namespace,
    healthy,
    kopf_done,
    list_dsvc,
)
from bench.env import (
    FLEET_NS,
    Env,
    Settings,
    Snapshot,
    fleet_dsvc,
    fleet_eas,
    wait_for,
)
from bench.stats import (
    OPERATOR_RESOURCES,
    Summary,
    by_resource,
    lateness,
    lateness_beyond_jitter,
    poll_gaps,
    scheduled_polls,
    times_by_service,
    write_delta,
)

PROCESSES = ("operator", "apiserver", "etcd", "emulator", "bench")


@dataclass(frozen=True)
class FleetResult:
    services: int
    interval: float
    window: float
    sync_seconds: float
    sync_writes: dict[str, int]
    polls_done: int
    polls_scheduled: float
    lateness_ms: Summary  # gap - interval, jitter included
    beyond_jitter_ms: Summary  # max(0, gap - 1.05 x interval)
    cpu_pct: float
    cpu_ms_per_poll: float
    rss_mib: float
    hwm_mib: float
    writes: dict[str, int]  # operator resources, "VERB resource[/sub]"
    other_writes: dict[str, int]  # the API server's own housekeeping
    slice_events: int
    apiserver_cpu_pct: float
    etcd_cpu_pct: float
    emulator_cpu_pct: float
    machine_cores: float  # average busy cores of the whole machine in the window
    other_cores: float  # of which outside the bench's processes (other users of the box)

    @property
    def polls_pct(self) -> float:
        return 100.0 * self.polls_done / self.polls_scheduled if self.polls_scheduled else 0.0

    @property
    def operator_writes(self) -> int:
        return sum(self.writes.values())

    @property
    def writes_per_min(self) -> float:
        return 60.0 * self.operator_writes / self.window

    @property
    def rss_kib_per_service(self) -> float:
        return 1024.0 * self.rss_mib / self.services


def create_fleet(env: Env, n: int, s: Settings) -> int:
    ensure_namespace(env.cp, FLEET_NS)
    interval = f"{s.interval:g}s"
    docs = [
        dsvc_manifest(fleet_dsvc(i), FLEET_NS, env.emulator.url, fleet_eas(i), interval)
        for i in range(n)
    ]
    return create_all(env.api, docs)


def _synced(env: Env, n: int, s: Settings) -> tuple[bool, str]:
    polled = env.emulator.per_service()
    missing_polls = sum(1 for i in range(n) if polled.get(fleet_eas(i), 0) < 1)
    published = env.watcher.services_with(FLEET_NS, s.instances)
    if missing_polls or published < n:
        return False, f"{n - missing_polls}/{n} polled, {published}/{n} published"
    items = [d for d in list_dsvc(env.api, FLEET_NS) if d["metadata"]["name"].startswith("fleet-")]
    ready = sum(1 for d in items if healthy(d, s.instances))
    # kopf's own bookkeeping (the finalizer) lands last under load.
    handled = sum(1 for d in items if kopf_done(d))
    return min(ready, handled) >= n, f"{ready}/{n} healthy, {handled}/{n} handled by kopf"


def wait_synced(env: Env, n: int, s: Settings, started: float) -> float:
    """Seconds from `started` (monotonic) until the fleet is polled, published and healthy
    (NaN if it never was: the window is then measured anyway and the note says so)."""
    deadline = started + 120 + n * 0.15  # 3,000 services: 9.5 minutes
    last_note = 0.0
    while True:
        ok, note = _synced(env, n, s)
        if ok:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            print(f"  warning: fleet of {n} not synced in time: {note}", flush=True)
            return float("nan")
        if time.monotonic() - last_note > 15:
            print(f"    syncing: {note}", flush=True)
            last_note = time.monotonic()
        time.sleep(1.0)


def run_level(env: Env, n: int, s: Settings) -> FleetResult:
    env.stop_operator()  # the new services are synced by the operator measured here
    created = create_fleet(env, n, s)
    print(f"  fleet {n}: {created} DirectServices created; starting the operator", flush=True)
    env.emulator.reset()
    before_start = env.requests()
    started = time.monotonic()
    env.start_operator(f"fleet-{n}")
    sync_seconds = wait_synced(env, n, s, started)
    print(f"  fleet {n}: synced after {sync_seconds:.1f} s; waiting for quiet", flush=True)
    if not env.wait_quiet(quiet=s.interval * 2.4, timeout=120):
        print("  warning: the operator kept writing; measuring anyway", flush=True)
    sync_writes = by_resource(write_delta(before_start, env.requests(), OPERATOR_RESOURCES))
    print(f"  fleet {n}: steady-state window of {s.duration:.0f} s", flush=True)
    return measure_window(env, n, s, sync_seconds, sync_writes)


def measure_window(
    env: Env, n: int, s: Settings, sync_seconds: float, sync_writes: dict[str, int]
) -> FleetResult:
    env.emulator.reset()
    mark = env.watcher.mark()
    before = env.snapshot()
    time.sleep(s.duration)
    after = env.snapshot()
    log = env.emulator.log()
    window = after.operator.wall - before.operator.wall
    found = times_by_service(log, before.at, after.at, (fleet_eas(i) for i in range(n)))
    done = sum(len(times) for times in found.values())
    gaps = poll_gaps(found)
    cpu_seconds = after.operator.cpu_seconds - before.operator.cpu_seconds
    delta = write_delta(before.requests, after.requests)
    ours = Counter({k: v for k, v in delta.items() if k[1] in OPERATOR_RESOURCES})
    other = Counter({k: v for k, v in delta.items() if k[1] not in OPERATOR_RESOURCES})
    events = [e for e in env.watcher.since(mark) if e.namespace == FLEET_NS]
    machine = procfs.busy_cores(before.machine, after.machine)
    ours_pct = sum(_pct(before, after, p) for p in PROCESSES)
    return FleetResult(
        services=n,
        interval=s.interval,
        window=window,
        sync_seconds=sync_seconds,
        sync_writes=sync_writes,
        polls_done=done,
        polls_scheduled=scheduled_polls(n, window, s.interval),
        lateness_ms=Summary.of(lateness(gaps, s.interval)).scaled(1000),
        beyond_jitter_ms=Summary.of(lateness_beyond_jitter(gaps, s.interval)).scaled(1000),
        cpu_pct=_pct(before, after, "operator"),
        cpu_ms_per_poll=1000.0 * cpu_seconds / done if done else float("nan"),
        rss_mib=procfs.mib(after.operator.rss_kib),
        hwm_mib=procfs.mib(after.operator.hwm_kib),
        writes=by_resource(ours),
        other_writes=by_resource(other),
        slice_events=len(events),
        apiserver_cpu_pct=_pct(before, after, "apiserver"),
        etcd_cpu_pct=_pct(before, after, "etcd"),
        emulator_cpu_pct=_pct(before, after, "emulator"),
        machine_cores=machine,
        other_cores=machine - ours_pct / 100.0,
    )


def _pct(before: Snapshot, after: Snapshot, which: str) -> float:
    sample_before: procfs.ProcSample = getattr(before, which)
    sample_after: procfs.ProcSample = getattr(after, which)
    return procfs.cpu_percent(sample_before, sample_after)


def restart_writes(
    env: Env, n: int, s: Settings, profile_dir: Path | None = None
) -> tuple[float, int]:
    """Restart the operator on a synced fleet: seconds until every service was polled again,
    and the writes it made meanwhile (should be none)."""
    env.emulator.reset()
    before = env.requests()
    started = time.monotonic()
    env.start_operator(f"restart-{n}", profile_dir=profile_dir)

    def all_polled() -> bool:
        polled = env.emulator.per_service()
        return all(polled.get(fleet_eas(i), 0) >= 1 for i in range(n))

    ok = wait_for(all_polled, timeout=120, step=1.0)
    seconds = time.monotonic() - started if ok else float("nan")
    time.sleep(s.interval)  # a full further round of polls
    writes = sum(write_delta(before, env.requests(), OPERATOR_RESOURCES).values())
    return seconds, writes
