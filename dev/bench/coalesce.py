"""Scenario: many DirectServices on few upstreams share their discovery calls.

1,000 DirectServices (one operator, watching only this scenario's namespace) poll 10
PAI-EAS services of the emulator at 5 s, 100 on each, with the same (no) credential. In the
steady window the emulator counts the discovery calls it answered: shared calls cost those
of 10 services, not of 1,000. The operator's own metric shows every DirectService still got
an answer within its interval.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from bench import procfs
from bench.cluster import create_all, dsvc_manifest, ensure_namespace, healthy, list_dsvc
from bench.env import Env, Settings, fleet_eas, wait_for
from bench.stats import OPERATOR_RESOURCES, by_resource, write_delta

NAMESPACE = "bench-coalesce"
HEADING = "## Coalescing: many DirectServices on few upstreams"


@dataclass(frozen=True)
class CoalesceResult:
    services: int
    upstreams: int
    interval: float
    window: float
    sync_seconds: float
    calls: int  # discovery calls the emulator answered in the window
    calls_by_upstream: dict[str, int]
    oldest_answer_s: float  # the largest seconds-since-last-success over the DirectServices
    cpu_pct: float
    writes: dict[str, int]

    @property
    def calls_per_min(self) -> float:
        return 60.0 * self.calls / self.window if self.window else 0.0

    @property
    def alone_per_min(self) -> float:
        """What the upstreams alone would be called: one call per interval each."""
        return self.upstreams * 60.0 / self.interval

    @property
    def unshared_per_min(self) -> float:
        return self.services * 60.0 / self.interval


def _name(i: int) -> str:
    return f"co-{i:05d}"


def oldest_answer(metrics_text: str) -> float:
    """The largest directservice_seconds_since_last_success of this scenario's namespace."""
    worst = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "directservice_seconds_since_last_success":
            continue
        for sample in family.samples:
            if sample.labels.get("namespace") == NAMESPACE:
                worst = max(worst, float(sample.value))
    return worst


def run_coalesce(env: Env, s: Settings) -> CoalesceResult:
    n, upstreams = s.coalesce_services, s.coalesce_upstreams
    ensure_namespace(env.cp, NAMESPACE)
    interval = f"{s.interval:g}s"
    docs = [
        dsvc_manifest(_name(i), NAMESPACE, env.emulator.url, fleet_eas(i % upstreams), interval)
        for i in range(n)
    ]
    create_all(env.api, docs)
    env.emulator.reset()
    started = time.monotonic()
    operator = env.start_operator("coalesce", extra_args=["-n", NAMESPACE])

    def synced() -> bool:
        items = list_dsvc(env.api, NAMESPACE)
        return sum(1 for d in items if healthy(d, s.instances)) >= n

    ok = wait_for(synced, timeout=300, step=1.0)
    sync_seconds = time.monotonic() - started if ok else float("nan")
    print(f"  {n:,} on {upstreams} upstreams: synced after {sync_seconds:.1f} s", flush=True)
    env.wait_quiet(quiet=s.interval * 2.4, timeout=120)
    env.emulator.reset()
    before = env.snapshot()
    time.sleep(s.duration)
    after = env.snapshot()
    oldest = oldest_answer(operator.metrics_text())
    names = {fleet_eas(j) for j in range(upstreams)}
    calls = Counter(
        str(entry.get("service")) for entry in env.emulator.log() if entry.get("service") in names
    )
    delta = write_delta(before.requests, after.requests, OPERATOR_RESOURCES)
    result = CoalesceResult(
        services=n,
        upstreams=upstreams,
        interval=s.interval,
        window=after.operator.wall - before.operator.wall,
        sync_seconds=sync_seconds,
        calls=sum(calls.values()),
        calls_by_upstream=dict(sorted(calls.items())),
        oldest_answer_s=oldest,
        cpu_pct=procfs.cpu_percent(before.operator, after.operator),
        writes=by_resource(delta),
    )
    env.stop_operator()
    return result


def coalesce_section(r: CoalesceResult) -> list[str]:
    spread = sorted(r.calls_by_upstream.values())
    return [
        f"{r.services:,} DirectServices on {r.upstreams} upstreams at {r.interval:g} s, one "
        f"credential, {r.window:.0f} s window: **{r.calls_per_min:,.0f} discovery calls/min**, "
        f"against {r.alone_per_min:,.0f} for {r.upstreams} services polled alone and "
        f"{r.unshared_per_min:,.0f} unshared ({r.calls_per_min / r.unshared_per_min:.3f}x). "
        f"Calls per upstream in the window: {spread[0] if spread else 0} to "
        f"{spread[-1] if spread else 0}. The oldest answer any DirectService held at the end: "
        f"{r.oldest_answer_s:.1f} s (interval {r.interval:g} s). Operator CPU {r.cpu_pct:.1f} %, "
        f"writes in the window {sum(r.writes.values())}; sync {r.sync_seconds:.1f} s.",
        "",
    ]
