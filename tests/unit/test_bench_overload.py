"""The overload scenario's figures: evenness of the stretched polls, writes per 100
services, verdict turns counted from the operator's log, and the target rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.fleet import FleetResult
from bench.overload import OverloadResult, _turns
from bench.report import Results, targets
from bench.stats import Summary
from benchdoc import bench_settings

pytestmark = pytest.mark.unit


def _fleet(writes: int) -> FleetResult:
    empty = Summary.of([])
    return FleetResult(
        services=6000, interval=5.0, window=120.0, sync_seconds=300.0, sync_writes={},
        polls_done=72_000, polls_scheduled=144_000, lateness_ms=empty, beyond_jitter_ms=empty,
        cpu_pct=99.0, cpu_ms_per_poll=1.6, rss_mib=500.0, hwm_mib=520.0,
        writes={"PATCH directservices/status": writes} if writes else {}, other_writes={},
        slice_events=0, apiserver_cpu_pct=5.0, etcd_cpu_pct=1.0, emulator_cpu_pct=20.0,
        machine_cores=1.9, other_cores=0.0,
    )  # fmt: skip


def _result(counts: list[int], writes: int = 0, turns: int = 0) -> OverloadResult:
    return OverloadResult(
        fleet=_fleet(writes), polls_per_service=tuple(sorted(counts)), turns_in_window=turns,
        turns_total=1, settle_seconds=300.0, settle_writes={},
    )  # fmt: skip


def test_the_spread_is_p90_over_p10_and_an_unpolled_service_counts() -> None:
    even = _result([12] * 80 + [11] * 20)
    assert even.spread == pytest.approx(12 / 11) and even.unpolled == 0
    uneven = _result([0] + [12] * 99)
    assert uneven.unpolled == 1


def test_writes_are_per_minute_per_100_services() -> None:
    # 120 writes in 120 s over 6,000 services: 60 a minute, 1 per 100 services.
    assert _result([12] * 100, writes=120).writes_per_min_per_100 == pytest.approx(1.0)


def test_verdict_turns_are_read_from_the_operator_log() -> None:
    log = (
        "WARNING directservice.controller.looplag: polls start late: the operator is overloaded\n"
        "INFO directservice.controller.looplag: polls start on time again\n"
        "INFO directservice.controller.reconciler: [ns/a] published 10 endpoints\n"
    )
    assert _turns(log) == 2


@pytest.mark.parametrize(
    ("writes", "turns", "verdicts"),
    [(0, 0, ["PASS", "PASS", "PASS"]), (120, 1, ["PASS", "**MISS**", "**MISS**"])],
)
def test_the_target_rows(writes: int, turns: int, verdicts: list[str]) -> None:
    res = Results(settings=bench_settings(Path("/nonexistent"), {"overload"}), meta={})
    res.overload = _result([12] * 100, writes=writes, turns=turns)
    rows = [line for line in targets(res) if "twice its load" in line]
    assert [row.rstrip(" |").rsplit("| ", 1)[-1] for row in rows] == verdicts
