"""Health scenario, part 3: a fleet whose every instance is health-checked, vs the same without.

N DirectServices x 10 instances on the PAI-EAS emulator, as in the fleet scenario, except
that the instances are the addresses of ONE network-lab host (N x 10 of them) where one
`bench.acceptor` accepts and closes on all. Nothing else is ever checked: the fleet
scenario's 10.x instances belong to DirectServices without health checks, in a namespace
this operator does not watch (`-n`).

Two windows, each with a fresh operator on the synced fleet: first without health checks
(the same-run baseline), then with a TCP check every 5 s on every instance (N x 10 ÷ 5
checks a second). Per window: what the fleet scenario measures (polls, their lateness,
CPU, memory, writes), plus the checks made, how late they started (the operator's
directservice_health_check_lateness_seconds histogram) and the acceptor's CPU.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from bench import procfs
from bench.cluster import create_all, dsvc_manifest, ensure_namespace, healthy, kopf_done
from bench.cluster import list_dsvc as list_dsvcs
from bench.env import Env, Settings, Snapshot
from bench.fleet import PROCESSES, FleetResult
from bench.healthprobes import TCP_PORT, start_acceptor
from bench.healthstats import HealthCounters, health_counters
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
from devenv.netlab import Host, NetLab
from directservice.api.names import GROUP, PLURAL
from directservice.api.names import VERSION as API_VERSION

NAMESPACE = "bench-health-fleet"
CHECK_INTERVAL = 5.0
CHECK = {"type": "tcp", "interval": "5s", "timeout": "1s"}


@dataclass(frozen=True)
class CheckedWindow:
    fleet: FleetResult
    health: HealthCounters  # deltas over the window
    acceptor_cpu_pct: float


@dataclass(frozen=True)
class CheckedFleet:
    services: int
    instances: int
    check_interval: float
    plain: CheckedWindow  # the same fleet without health checks
    checked: CheckedWindow

    @property
    def expected_checks_per_second(self) -> float:
        return self.services * self.instances / self.check_interval


def dsvc_name(i: int) -> str:
    return f"hfleet-{i:05d}"


def eas_name(i: int) -> str:
    return f"hfleet_{i:05d}"


def instances(host: Host, i: int, per: int) -> list[dict[str, Any]]:
    return [{"ip": ip, "port": TCP_PORT, "weight": 100} for ip in host.ips[i * per : (i + 1) * per]]


def _synced(env: Env, n: int, per: int, checks: int) -> tuple[bool, str]:
    polled = env.emulator.per_service()
    missing = sum(1 for i in range(n) if polled.get(eas_name(i), 0) < 1)
    published = env.watcher.services_with(NAMESPACE, per)
    done = health_counters(env.operator).checks if env.operator is not None else 0
    if missing or published < n or done < checks:
        return False, f"{n - missing}/{n} polled, {published}/{n} published, {done} checks"
    items = [d for d in list_dsvcs(env.api, NAMESPACE) if d["metadata"]["name"][:7] == "hfleet-"]
    ready = sum(1 for d in items if healthy(d, per) and kopf_done(d))
    return ready >= n, f"{ready}/{n} healthy and handled by kopf"


def wait_synced(env: Env, n: int, per: int, checks: int, started: float) -> float:
    """Seconds from `started` until polled, published, healthy and (if `checks`) that many
    checks made; NaN if not within the deadline (measured anyway)."""
    deadline = started + 120 + n * 0.15
    last_note = 0.0
    while True:
        ok, note = _synced(env, n, per, checks)
        if ok:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            print(f"  warning: checked fleet not synced in time: {note}", flush=True)
            return float("nan")
        if time.monotonic() - last_note > 15:
            print(f"    syncing: {note}", flush=True)
            last_note = time.monotonic()
        time.sleep(1.0)


def _pct(before: Snapshot, after: Snapshot, which: str) -> float:
    sample_before: procfs.ProcSample = getattr(before, which)
    sample_after: procfs.ProcSample = getattr(after, which)
    return procfs.cpu_percent(sample_before, sample_after)


def measure(env: Env, n: int, s: Settings, sync: tuple[float, dict[str, int]],
            acceptor: int) -> CheckedWindow:  # fmt: skip
    """One window of `s.health_window` seconds, as the fleet scenario measures it."""
    assert env.operator is not None
    env.emulator.reset()
    mark = env.watcher.mark()
    checks_before, server_before = health_counters(env.operator), procfs.sample(acceptor)
    before = env.snapshot()
    time.sleep(s.health_window)
    after = env.snapshot()
    checks_after, server_after = health_counters(env.operator), procfs.sample(acceptor)
    window = after.operator.wall - before.operator.wall
    found = times_by_service(env.emulator.log(), before.at, after.at, map(eas_name, range(n)))
    done = sum(len(times) for times in found.values())
    gaps = poll_gaps(found)
    delta = write_delta(before.requests, after.requests)
    ours = Counter({k: v for k, v in delta.items() if k[1] in OPERATOR_RESOURCES})
    other = Counter({k: v for k, v in delta.items() if k[1] not in OPERATOR_RESOURCES})
    machine = procfs.busy_cores(before.machine, after.machine)
    cpu_seconds = after.operator.cpu_seconds - before.operator.cpu_seconds
    fleet = FleetResult(
        services=n,
        interval=s.interval,
        window=window,
        sync_seconds=sync[0],
        sync_writes=sync[1],
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
        slice_events=sum(1 for e in env.watcher.since(mark) if e.namespace == NAMESPACE),
        apiserver_cpu_pct=_pct(before, after, "apiserver"),
        etcd_cpu_pct=_pct(before, after, "etcd"),
        emulator_cpu_pct=_pct(before, after, "emulator"),
        machine_cores=machine,
        other_cores=machine - sum(_pct(before, after, p) for p in PROCESSES) / 100.0,
    )
    return CheckedWindow(
        fleet, checks_after - checks_before, procfs.cpu_percent(server_before, server_after)
    )


def run_window(
    env: Env, n: int, s: Settings, label: str, checks: int, acceptor: int
) -> CheckedWindow:
    """A fresh operator on the fleet: sync, quiet, then one measured window."""
    env.stop_operator()
    env.emulator.reset()
    before_start = env.requests()
    started = time.monotonic()
    env.start_operator(f"health-fleet-{label}", extra_args=["-n", NAMESPACE])
    sync_seconds = wait_synced(env, n, s.instances, checks, started)
    print(f"  {label}: synced after {sync_seconds:.1f} s; waiting for quiet", flush=True)
    if not env.wait_quiet(quiet=s.interval * 2.4, timeout=120):
        print("  warning: the operator kept writing; measuring anyway", flush=True)
    sync_writes = by_resource(write_delta(before_start, env.requests(), OPERATOR_RESOURCES))
    print(f"  {label}: window of {s.health_window:.0f} s", flush=True)
    result = measure(env, n, s, (sync_seconds, sync_writes), acceptor)
    env.stop_operator()
    return result


def add_checks(api: client.ApiClient, n: int) -> None:
    """spec.healthCheck on every DirectService of the fleet (a merge patch each)."""
    custom: Any = client.CustomObjectsApi(api)
    body = {"spec": {"healthCheck": CHECK}}
    for i in range(n):
        custom.patch_namespaced_custom_object(
            GROUP, API_VERSION, NAMESPACE, PLURAL, dsvc_name(i), body,
            _content_type="application/merge-patch+json",
        )  # fmt: skip


def run_checked_fleet(env: Env, lab: NetLab, s: Settings) -> CheckedFleet:
    n, per = s.health_services, s.instances
    host, acceptor = start_acceptor(lab, n * per, http=False, cpu=None)
    try:
        for i in range(n):
            env.emulator.put_service(eas_name(i), instances(host, i, per))
        ensure_namespace(env.cp, NAMESPACE)
        docs = [
            dsvc_manifest(
                dsvc_name(i), NAMESPACE, env.emulator.url, eas_name(i), f"{s.interval:g}s"
            )
            for i in range(n)
        ]
        create_all(env.api, docs)
        print(f"  {n:,} DirectServices x {per} instances on {host.name}", flush=True)
        plain = run_window(env, n, s, "without checks", 0, acceptor.pid)
        add_checks(env.api, n)
        checked = run_window(env, n, s, "with checks", n * per, acceptor.pid)
    finally:
        env.stop_operator()
        lab.remove_host(host)
    return CheckedFleet(n, per, CHECK_INTERVAL, plain, checked)
