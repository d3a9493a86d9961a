"""The health scenario: active health checks, on one network lab the scenario creates.

1. Check cost (bench.healthprobes): CPU per check on one core, vs same-run baselines.
2. Time to removal (bench.healthkill): kills of instance servers, seen through CoreDNS.
3. Fleet with checks (bench.healthfleet): N x 10 checked instances vs the same unchecked.

Every address checked or called belongs to a host of this lab (or is loopback).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from bench.env import Env, Settings
from bench.healthfleet import CheckedFleet, run_checked_fleet
from bench.healthkill import KillResult, run_kills
from bench.healthprobes import CostResult, run_cost
from devenv.netlab import NetLab


@dataclass(frozen=True)
class HealthResult:
    date: str
    revision: str
    cores: str
    cost: CostResult
    kills: KillResult
    fleet: CheckedFleet


def run_health(env: Env, s: Settings, meta: dict[str, str]) -> HealthResult:
    with NetLab() as lab:
        print(f"== health: check cost on one core (lab {lab.lab})", flush=True)
        cost = run_cost(lab, s.workdir, s.quick)
        tcp = cost.method("probe: tcp")
        if tcp is not None:
            print(f"  tcp probe: {tcp.cpu_us_per_check:.0f} µs/check, "
                  f"{tcp.checks_per_second:,.0f} checks/s", flush=True)  # fmt: skip
        print(f"== health: {s.health_kills} kills, time to leave DNS and to return", flush=True)
        kills = run_kills(env, lab, s)
        print(f"  removal p50 {kills.removal_s.p50:.2f} s p99 {kills.removal_s.p99:.2f} s "
              f"(bound {kills.removal_bound:g} s); return p50 {kills.return_s.p50:.2f} s p99 "
              f"{kills.return_s.p99:.2f} s (bound {kills.return_bound:g} s); "
              f"{kills.slice_writes_per_transition:.2f} slice writes per transition",
              flush=True)  # fmt: skip
        print(f"== health: fleet {s.health_services:,} x {s.instances} with checks", flush=True)
        fleet = run_checked_fleet(env, lab, s)
    checked = fleet.checked
    print(f"  with checks: CPU {checked.fleet.cpu_pct:.1f} % (without "
          f"{fleet.plain.fleet.cpu_pct:.1f} %), {checked.health.checks / checked.fleet.window:,.0f}"
          f" checks/s, polls {checked.fleet.polls_pct:.2f} %", flush=True)  # fmt: skip
    return HealthResult(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        revision=meta.get("revision", "?"),
        cores=meta.get("cores", "?"),
        cost=cost,
        kills=kills,
        fleet=fleet,
    )
