"""The soak's figures from samples: steady segments, writes across restarts, the ready view
of a slice, the self-test verdict and the JSON spelling."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from soak.__main__ import finite
from soak.chaos import SabotageRecord
from soak.checker import LossReport, Violation
from soak.plan import Plan
from soak.report import SoakRun, build_summary, self_test
from soak.restarts import RestartRecord
from soak.sampler import Sample, operator_writes
from soak.summary import (
    apiserver_delta,
    cumulative_writes,
    load,
    per_minute,
    poll_rate,
    steady_segments,
    writes_by_kind,
)
from soak.watch import ready_event

pytestmark = pytest.mark.unit

ORIGIN = 1_000_000.0


def restart(at: float, resynced_after: float | None, generation: int) -> RestartRecord:
    return RestartRecord("SIGKILL", ORIGIN + at, 0.1, "signal 9", 3.0, resynced_after, generation)


def test_steady_segments_skip_the_sync_and_each_restart_warm_up() -> None:
    restarts = [restart(300.0, 20.0, 1), restart(700.0, None, 2), restart(760.0, 10.0, 3)]
    segments = steady_segments(restarts, ORIGIN, ORIGIN + 1200.0, warmup=60.0)
    assert [(s.generation, s.start, s.end) for s in segments] == [
        (0, 60.0, 300.0),
        (1, 380.0, 700.0),
        # generation 2 lived 60 s, all of it warm-up; 3 resynced at 770
        (3, 830.0, 1200.0),
    ]


def sample(
    at: float, generation: int | None, writes: dict[str, int] | None, **kw: object
) -> Sample:
    return Sample(ORIGIN + at, generation, writes=writes, **kw)  # type: ignore[arg-type]


def test_writes_add_up_over_processes_that_each_count_from_zero() -> None:
    samples = [
        sample(0.0, 0, {"EndpointSlice create": 10, "Event create": 5}),
        sample(15.0, 0, {"EndpointSlice create": 12, "Event create": 6}),
        sample(20.0, None, None),  # restarting
        sample(30.0, 1, {"EndpointSlice update": 1}),
        sample(35.0, 1, None),  # not scraped this time
        sample(45.0, 1, {"EndpointSlice update": 4}),
    ]
    assert [w for _, w in cumulative_writes(samples)] == [15, 18, 19, 22]
    assert writes_by_kind(samples) == {
        "EndpointSlice create": 12,
        "EndpointSlice update": 4,
        "Event create": 6,
    }


def test_apiserver_delta_is_measured_from_the_first_scrape_after_the_origin() -> None:
    samples = [
        Sample(ORIGIN - 5.0, 0, apiserver_writes={"POST endpointslices": 100}),
        Sample(ORIGIN + 5.0, 0, apiserver_writes={"POST endpointslices": 110}),
        Sample(ORIGIN + 10.0, 0),
        Sample(
            ORIGIN + 65.0, 0, apiserver_writes={"POST endpointslices": 111, "PUT endpointslices": 3}
        ),
    ]
    assert apiserver_delta(samples, ORIGIN) == (
        {"POST endpointslices": 1, "PUT endpointslices": 3},
        60.0,
    )
    assert apiserver_delta(samples[:2], ORIGIN) == ({}, 0.0)


def test_operator_writes_are_read_from_the_metrics_exposition() -> None:
    text = "\n".join(
        [
            "# TYPE directservice_api_writes_total counter",
            'directservice_api_writes_total{kind="EndpointSlice",verb="create"} 12.0',
            'directservice_api_writes_total{kind="DirectService",verb="patch"} 3.0',
            'directservice_api_writes_created{kind="EndpointSlice",verb="create"} 1.7e9',
        ]
    )
    assert operator_writes(text) == {"DirectService patch": 3, "EndpointSlice create": 12}


def test_only_ready_endpoints_count_as_published() -> None:
    obj = {
        "metadata": {"namespace": "bench", "name": "s-1", "labels": {}},
        "ports": [{"port": 8000}],
        "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "serving": True}},
            {"addresses": ["10.0.0.4"]},  # unset: ready, as the API defines it
        ],
    }
    event = ready_event("ADDED", obj, 1.0)
    assert event.ready == {"10.0.0.1:8000", "10.0.0.4:8000"}
    assert event.addresses == {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}


def _violation(service: str, at: float, kind: str = "unexplained") -> Violation:
    return Violation(service, ORIGIN + at, kind, 0, 10, ("10.0.0.1:8000",), ())


def _run(violations: tuple[Violation, ...], final: tuple[Violation, ...] = ()) -> SoakRun:
    def report(v: tuple[Violation, ...]) -> LossReport:
        return LossReport(1, v, 5, 3, 3, 10, 12)

    return SoakRun(
        settings={"services": 1, "instances": 10, "interval": 5.0},
        meta={},
        origin=ORIGIN,
        end=ORIGIN + 600.0,
        sync_seconds=10.0,
        warmup=60.0,
        samples=[],
        restarts=[],
        loss=report(violations),
        final=report(final),
        plan=Plan((), (), (), None),
        sabotage=SabotageRecord("fleet-00001", ORIGIN + 300.0, ("fleet-00001-v4-0",)),
        sabotage_restored=ORIGIN + 301.5,
    )


def test_the_self_test_passes_only_if_its_deletion_is_the_loss_seen() -> None:
    caught = _run((_violation("fleet-00001", 300.2),))
    verdict = self_test(caught, window=60.0)
    assert verdict is not None
    assert verdict["passed"] and verdict["violations_caught"] == 1
    assert verdict["restored_after_s"] == 1.5

    missed = self_test(_run(()), window=60.0)
    assert missed is not None and not missed["passed"] and not missed["detected"]

    also_other = _run((_violation("fleet-00001", 300.2), _violation("fleet-00002", 100.0)))
    verdict = self_test(also_other, window=60.0)
    assert verdict is not None and not verdict["passed"] and verdict["other_violations"] == 1


def test_the_summary_counts_final_mismatches_once_and_is_strict_json() -> None:
    run = _run(
        (_violation("fleet-00001", 300.2), _violation("fleet-00001", 500.0, "unsettled")),
        # the final check judges the whole timeline again: only its own check counts
        final=(_violation("fleet-00001", 300.2), _violation("fleet-00001", 600.0, "unsettled")),
    )
    run = dataclasses.replace(
        run,
        poll_failures={"fleet-00001": [(ORIGIN + 449.0, "Timeout"), (ORIGIN + 499.0, "Timeout")]},
        failure_window=50.0,
    )
    summary = finite(build_summary(run))
    loss = summary["loss"]
    # Each violation carries the operator's failed polls of it in the window before it.
    assert [v["operator_poll_failures"] for v in loss["violations"]] == [{}, {"Timeout": 1}]
    assert (loss["total"], loss["unexplained_states"], loss["unsettled_checks"]) == (3, 1, 1)
    assert loss["final"]["mismatched"] == 1
    assert summary["rss_kib"]["slope_per_min"] is None  # no samples: no number
    json.loads(json.dumps(summary, allow_nan=False))


def test_late_checks_are_listed_apart_and_are_no_loss() -> None:
    late = (_violation("fleet-00211", 60.0, "late"), _violation("fleet-00211", 65.0, "late"))
    run = _run(())
    run = dataclasses.replace(run, loss=dataclasses.replace(run.loss, late=late))
    loss = build_summary(run)["loss"]
    assert (loss["total"], loss["late_while_failing"], loss["services_late"]) == (0, 2, 1)
    assert [v["at_minutes"] for v in loss["late"]] == [1.0, 1.083]
    assert loss["violations"] == []


def test_finite_turns_nan_into_null_everywhere() -> None:
    assert finite({"a": [math.nan, 1.0, (math.inf,)], "b": {"c": -math.inf}}) == {
        "a": [None, 1.0, [None]],
        "b": {"c": None},
    }


def test_poll_rate_compares_answered_polls_with_a_punctual_fleet() -> None:
    # 100 services at 5 s: 20 polls a second when punctual.
    samples = [Sample(ORIGIN + t, 0, polls=int(p)) for t, p in [(-30, 0), (0, 600), (60, 1800)]]
    samples += [Sample(ORIGIN + 120.0, 1, polls=2400), Sample(ORIGIN + 180.0, 1, polls=3300)]
    segments = steady_segments([restart(90.0, 10.0, 1)], ORIGIN, ORIGIN + 180.0, warmup=0.0)
    rate = poll_rate(samples, ORIGIN, segments, services=100, interval=5.0)
    # Steady: 0..60 s (1,200 polls) and 100..180 s (samples at 120 and 180: 900 in 60 s).
    assert rate["steady_pct"] == pytest.approx(100.0 * (1200 + 900) / (20 * 120))
    assert rate["chaos_polls"] == 2700
    assert rate["chaos_pct"] == pytest.approx(100.0 * 2700 / (20 * 180))
    assert math.isnan(poll_rate([], ORIGIN, segments, 100, 5.0)["steady_pct"])


def test_load_splits_the_machine_into_the_soak_and_everything_else() -> None:
    # 2 cores, 100 ticks a second in all; the machine is 1.5 cores busy over 10 s.
    first = Sample(ORIGIN, 0, cpu_seconds=10.0, others_cpu={"apiserver": 5.0}, machine=(0, 0))
    second = Sample(
        ORIGIN + 10.0, 0, cpu_seconds=14.0, others_cpu={"apiserver": 6.0}, machine=(750, 1000)
    )
    restarted = Sample(
        ORIGIN + 20.0, 1, cpu_seconds=0.5, others_cpu={"apiserver": 7.0}, machine=(1500, 2000)
    )
    assert load([first, second, restarted], cores=2) == [
        (None, None),
        (1.5, 1.0),  # the operator (0.4) and the API server (0.1) are ours
        (1.5, 1.4),  # a new operator process: its CPU is not comparable, left out
    ]


def test_per_minute_bins_times_from_a_start_minute() -> None:
    times = [ORIGIN - 61.0, ORIGIN - 1.0, ORIGIN + 0.0, ORIGIN + 59.9, ORIGIN + 60.0, ORIGIN + 500]
    assert per_minute(times, ORIGIN, start=-1, end=2.0) == [1, 2, 1]
