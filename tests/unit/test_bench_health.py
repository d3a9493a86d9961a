"""The health scenario's pure parts: check counters from /metrics, quantiles from histogram
buckets, and how its section is written into docs/benchmarks.md without losing the others."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from bench.document import write
from bench.fleet import FleetResult
from bench.health import HealthResult
from bench.healthcost import ScheduledCost
from bench.healthfleet import CheckedFleet, CheckedWindow
from bench.healthkill import KillResult
from bench.healthprobes import CostResult, Method
from bench.healthreport import HEADING, current_section, splice
from bench.healthstats import HealthCounters, bucket_quantile, parse_health
from bench.report import Results
from bench.stats import Summary
from benchdoc import DOC
from benchdoc import bench_settings as _settings

pytestmark = pytest.mark.unit

INF = math.inf
METRICS = """\
# TYPE directservice_health_checks_total counter
directservice_health_checks_total{kind="tcp",result="pass"} 900.0
directservice_health_checks_total{kind="tcp",result="fail"} 40.0
directservice_health_checks_total{kind="http",result="fail"} 60.0
directservice_health_checks_created{kind="tcp",result="pass"} 1.7e9
directservice_health_check_lateness_seconds_bucket{le="0.001"} 500.0
directservice_health_check_lateness_seconds_bucket{le="0.01"} 900.0
directservice_health_check_lateness_seconds_bucket{le="+Inf"} 1000.0
directservice_health_check_lateness_seconds_count 1000.0
"""


def test_parse_health_sums_results_and_sorts_buckets() -> None:
    counters = parse_health(METRICS)
    assert (counters.passed, counters.failed, counters.checks) == (900.0, 100.0, 1000.0)
    assert counters.lateness_buckets == ((0.001, 500.0), (0.01, 900.0), (INF, 1000.0))
    assert counters.late_share(0.01) == pytest.approx(0.1)
    assert math.isnan(counters.late_share(0.5))  # not a bucket bound


def test_counters_subtract_bucket_by_bucket() -> None:
    before = HealthCounters(100, 10, ((0.001, 80.0), (0.01, 100.0), (INF, 110.0)))
    after = HealthCounters(300, 10, ((0.001, 180.0), (0.01, 280.0), (INF, 310.0)))
    delta = after - before
    assert (delta.passed, delta.failed) == (200, 0)
    assert delta.lateness_buckets == ((0.001, 100.0), (0.01, 180.0), (INF, 200.0))
    assert delta.late_share(0.001) == pytest.approx(0.5)


def test_bucket_quantile_interpolates_within_the_bucket() -> None:
    buckets = ((0.001, 500.0), (0.01, 900.0), (INF, 1000.0))
    assert bucket_quantile(buckets, 0.25) == pytest.approx(0.0005)  # first bucket from 0
    assert bucket_quantile(buckets, 0.7) == pytest.approx(0.001 + 0.009 * 0.5)
    assert bucket_quantile(buckets, 0.9) == pytest.approx(0.01)
    assert bucket_quantile(buckets, 0.99) == INF  # beyond the highest finite bound
    assert math.isnan(bucket_quantile((), 0.5))
    assert math.isnan(bucket_quantile(((0.1, 0.0), (INF, 0.0)), 0.5))


def test_splice_inserts_the_section_before_the_notes_and_keeps_the_rest() -> None:
    section = f"{HEADING}\n\nHealth figures.\n\n"
    spliced = splice(DOC, section)
    assert spliced.replace(section, "") == DOC
    assert spliced.index(HEADING) < spliced.index("## Notes from this run")
    assert current_section(spliced) == section


def test_splice_replaces_only_the_section_it_finds() -> None:
    old = splice(DOC, f"{HEADING}\n\nOld figures.\n\n")
    new = splice(old, f"{HEADING}\n\nNew figures.\n\n")
    assert "Old figures" not in new
    assert new.replace(f"{HEADING}\n\nNew figures.\n\n", "") == DOC
    assert splice(DOC, "") == DOC  # nothing to remove, nothing added


def test_splice_at_the_end_of_a_file_without_followers() -> None:
    text = "# Benchmarks\n\n## Targets\n\nx"
    assert splice(text, f"{HEADING}\n\ny\n") == f"{text}\n{HEADING}\n\ny\n"


def _fleet(cpu_pct: float) -> FleetResult:
    summary = Summary.of([0.0, 250.0])
    return FleetResult(
        services=1000, interval=5.0, window=60.0, sync_seconds=30.0, sync_writes={},
        polls_done=12_000, polls_scheduled=12_000.0, lateness_ms=summary,
        beyond_jitter_ms=summary, cpu_pct=cpu_pct, cpu_ms_per_poll=2.0, rss_mib=400.0,
        hwm_mib=410.0, writes={}, other_writes={}, slice_events=0, apiserver_cpu_pct=1.0,
        etcd_cpu_pct=1.0, emulator_cpu_pct=8.0, machine_cores=1.0, other_cores=0.1,
    )  # fmt: skip


def _health() -> HealthResult:
    scheduled = ScheduledCost(10_000, 5.0, 20.0, 40_000, 40_000, 8.0, 0.001, 0.2)
    method = Method("probe: tcp", 20_000, 20_000, 256, 3.0, 2.8, 0.55)
    kills = KillResult(
        services=10, kills=50, ttl=1, removal_bound=3.5, return_bound=3.0,
        removal_s=Summary.of([1.2, 1.9]), return_s=Summary.of([1.5, 2.1]), missed=0,
        transitions=100, slice_writes=100.0, all_writes=102.0, removals_within_bound=50,
        returns_within_bound=50, other_writes={"Event create": 2},
    )  # fmt: skip
    # p50 within the buckets, p99 beyond the last finite one (10 s): shown as "> 10,000" ms.
    counters = HealthCounters(120_000, 0, ((0.01, 60_000.0), (10.0, 110_000.0), (INF, 1.2e5)))
    idle = HealthCounters(0, 0, ())
    fleet = CheckedFleet(
        1000, 10, 5.0, CheckedWindow(_fleet(45.0), idle, 0.0),
        CheckedWindow(_fleet(90.0), counters, 8.0),
    )  # fmt: skip
    cost = CostResult(1000, (method,), scheduled, scheduled, 20.0)
    return HealthResult("2026-01-01 00:00 UTC", "abc", "2", cost, kills, fleet)


def test_a_health_only_run_rewrites_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    res = Results(settings=_settings(tmp_path, {"health"}), meta={})
    write(res, path)
    assert path.read_text() == DOC, "nothing measured yet: the file is left alone"

    res.health = _health()
    write(res, path)
    text = path.read_text()
    section = current_section(text)
    assert "PASS" in section and "2.00x" in section  # 90 % vs 45 % of a core
    assert "| 10.00 / > 10,000 |" in section  # check lateness p50 / p99, ms
    assert "Contended" not in section  # other processes used 0.1 cores
    assert "1.02 per transition; others: Event create 2)" in section
    assert text.replace(section, "") == DOC

    write(dataclasses.replace(res, health=dataclasses.replace(res.health, revision="def")), path)
    assert text.replace(section, "") == path.read_text().replace(
        current_section(path.read_text()), ""
    )
    assert "revision def" in path.read_text() and "revision abc" not in path.read_text()


def test_a_run_without_the_health_scenario_keeps_the_section_the_file_had(
    tmp_path: Path,
) -> None:
    path = tmp_path / "benchmarks.md"
    section = f"{HEADING}\n\nEarlier health figures.\n\n"
    path.write_text(splice(DOC, section))
    write(Results(settings=_settings(tmp_path, {"fleet"}), meta={}), path)
    text = path.read_text()
    assert current_section(text) == section
    assert "Large figures" not in text, "the other sections are this run's"
    assert text.index(HEADING) < text.index("## How each number is measured")


def test_a_window_shared_with_other_busy_processes_is_flagged(tmp_path: Path) -> None:
    health = _health()
    busy = dataclasses.replace(health.fleet.checked.fleet, other_cores=1.2)
    fleet = dataclasses.replace(
        health.fleet, checked=dataclasses.replace(health.fleet.checked, fleet=busy)
    )
    res = Results(settings=_settings(tmp_path, {"health"}), meta={})
    res.health = dataclasses.replace(health, fleet=fleet)
    path = tmp_path / "benchmarks.md"
    write(res, path)
    assert "**Contended run**: processes outside the bench used up to 1.20 of" in (path.read_text())
