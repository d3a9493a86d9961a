"""Scenario: one replica with about twice the polls it can make.

A fleet of `overload_services` (6,000) polled every `overload_interval` (2.5 s: the poll
load of 12,000 services at 5 s; one replica made every poll of 6,000 at 5 s) runs on one
operator. Past sync, once its writes have died down, a window measures what an overloaded
operator must still do: poll every DirectService, evenly stretched, write next to nothing,
and never flap its Overloaded verdict. DirectServices an earlier scenario left with another
interval are edited to this one first.
"""

from __future__ import annotations

import dataclasses
import math
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from bench.cluster import list_dsvc
from bench.env import FLEET_NS, Env, Settings, fleet_eas
from bench.fleet import FleetResult, create_fleet, measure_window, wait_synced
from bench.stats import OPERATOR_RESOURCES, by_resource, write_delta
from directservice.api.names import GROUP, PLURAL
from directservice.api.names import VERSION as API_VERSION

HEADING = "## Overload: one replica at about twice the polls it can make"
TURN = re.compile(r"polls start (late|on time again)")


@dataclass(frozen=True)
class OverloadResult:
    fleet: FleetResult
    polls_per_service: tuple[int, ...]  # in the window, sorted
    turns_in_window: int  # Overloaded verdict turns in the window (operator log)
    turns_total: int  # since the operator started
    settle_seconds: float  # from synced until the operator's writes died down
    settle_writes: dict[str, int]

    @property
    def unpolled(self) -> int:
        return sum(1 for n in self.polls_per_service if n == 0)

    def quantile(self, q: float) -> int:
        counts = self.polls_per_service
        return counts[min(len(counts) - 1, math.floor(q * len(counts)))] if counts else 0

    @property
    def spread(self) -> float:
        """p90 ÷ p10 of polls per service: 1.0 is perfectly even."""
        low = self.quantile(0.10)
        return self.quantile(0.90) / low if low else math.inf

    @property
    def writes_per_min_per_100(self) -> float:
        f = self.fleet
        return 60.0 * f.operator_writes / f.window / (f.services / 100) if f.window else 0.0


def _turns(log_text: str) -> int:
    return len(TURN.findall(log_text))


def _set_interval(env: Env, interval: str) -> int:
    """Edit the fleet's DirectServices that poll at another interval; how many were."""
    custom: Any = client.CustomObjectsApi(env.api)
    names = [
        d["metadata"]["name"]
        for d in list_dsvc(env.api, FLEET_NS)
        if (d.get("spec") or {}).get("pollInterval") != interval
    ]
    patch = {"spec": {"pollInterval": interval}}

    def edit(name: str) -> None:
        custom.patch_namespaced_custom_object(
            GROUP, API_VERSION, FLEET_NS, PLURAL, name, patch, _preload_content=False
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(edit, names))
    return len(names)


def run_overload(env: Env, settings: Settings) -> OverloadResult:
    s = dataclasses.replace(settings, interval=settings.overload_interval)
    n = s.overload_services
    env.stop_operator()
    edited = _set_interval(env, f"{s.interval:g}s")
    if edited:
        print(f"  {edited:,} DirectServices edited to poll every {s.interval:g} s", flush=True)
    create_fleet(env, n, s)
    env.emulator.reset()
    before_start = env.requests()
    started = time.monotonic()
    operator = env.start_operator(f"overload-{n}")
    sync_seconds = wait_synced(env, n, s, started)
    print(f"  overload {n:,}: synced after {sync_seconds:.1f} s; waiting for quiet", flush=True)
    synced_at, synced_requests = time.monotonic(), env.requests()
    # The verdict turns for every DirectService at once; its reports take turns (20/s).
    if not env.wait_quiet(quiet=s.interval * 2.4, timeout=900):
        print("  warning: the operator kept writing; measuring anyway", flush=True)
    settle = time.monotonic() - synced_at
    settle_writes = by_resource(write_delta(synced_requests, env.requests(), OPERATOR_RESOURCES))
    sync_writes = by_resource(write_delta(before_start, synced_requests, OPERATOR_RESOURCES))
    turns_before = _turns(operator.log_path.read_text())
    fleet = measure_window(env, n, s, sync_seconds, sync_writes)
    log_text = operator.log_path.read_text()
    polls = Counter(str(e.get("service")) for e in env.emulator.log())
    counts = tuple(sorted(polls.get(fleet_eas(i), 0) for i in range(n)))
    result = OverloadResult(
        fleet=fleet,
        polls_per_service=counts,
        turns_in_window=_turns(log_text) - turns_before,
        turns_total=_turns(log_text),
        settle_seconds=settle,
        settle_writes=settle_writes,
    )
    env.stop_operator()
    return result


def overload_section(r: OverloadResult) -> list[str]:
    f = r.fleet
    return [
        f"{f.services:,} services x 10 instances at {f.interval:g} s on one replica (the poll "
        f"load of {f.services * 5 / f.interval:,.0f} services at 5 s), "
        f"{f.window:.0f} s window after the writes of the verdict's turn died down "
        f"({r.settle_seconds:.0f} s after sync, {sum(r.settle_writes.values()):,} writes: "
        + (", ".join(f"{k} {v:,}" for k, v in r.settle_writes.items()) or "none")
        + ").",
        "",
        "| sync s | polls done / scheduled | % | polls per service p10 / p50 / p90 (min, max) "
        "| p90 ÷ p10 | unpolled | writes / min / 100 services | verdict turns in window "
        "(since start) | CPU % | RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {f.sync_seconds:.1f} | {f.polls_done:,} / {f.polls_scheduled:,.0f} | "
        f"{f.polls_pct:.2f} | {r.quantile(0.10)} / {r.quantile(0.5)} / {r.quantile(0.90)} "
        f"({r.quantile(0.0)}, {r.quantile(1.0)}) | {r.spread:.2f} | {r.unpolled} | "
        f"{r.writes_per_min_per_100:.2f} | {r.turns_in_window} ({r.turns_total}) | "
        f"{f.cpu_pct:.1f} | {f.rss_mib:.0f} |",
        "",
    ]
