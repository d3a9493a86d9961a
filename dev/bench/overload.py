"""Scenario: one replica with twice the fleet it can carry.

A fleet of `overload_services` (6,000: twice the 3,000 one replica carries at 5 s) runs on
one operator. Past sync, once its writes have died down, a window measures what an
overloaded operator must still do: poll every DirectService, evenly stretched, write next
to nothing, and never flap its Overloaded verdict.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass

from bench.env import Env, Settings, fleet_eas
from bench.fleet import FleetResult, create_fleet, measure_window, wait_synced
from bench.stats import OPERATOR_RESOURCES, by_resource, write_delta

HEADING = "## Overload: twice the fleet one replica carries"
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


def run_overload(env: Env, s: Settings) -> OverloadResult:
    n = s.overload_services
    env.stop_operator()
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
        f"{f.services:,} services x 10 instances at {f.interval:g} s on one replica, "
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
