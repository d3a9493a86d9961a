"""The soak's chaos plan: seeded and deterministic, within its bounds, and made of faults the
emulator accepts."""

from __future__ import annotations

import dataclasses
import itertools
from collections import defaultdict

import pytest

from directservice.emulator.faults import parse_fault
from soak.plan import FAULT_MODES, PlanSettings, make_plan

pytestmark = pytest.mark.unit

SETTINGS = PlanSettings(
    services=200,
    instances=10,
    seconds=1800.0,
    faults_per_minute=8,
    changes_per_minute=6,
    restarts=4,
    seed=3,
)


def test_the_same_seed_gives_the_same_plan_and_another_seed_another() -> None:
    assert make_plan(SETTINGS) == make_plan(SETTINGS)
    other = make_plan(dataclasses.replace(SETTINGS, seed=4))
    plan = make_plan(SETTINGS)
    assert other.faults != plan.faults
    assert other.changes != plan.changes
    assert other.restarts != plan.restarts


def test_faults_are_within_the_run_and_never_overlap_on_a_service() -> None:
    plan = make_plan(SETTINGS)
    assert len(plan.faults) > 0.9 * 30 * SETTINGS.faults_per_minute  # few starts dropped
    by_service: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for span in plan.faults:
        low, high = SETTINGS.fault_seconds
        assert 0.0 <= span.at < span.until <= SETTINGS.seconds
        assert span.until - span.at <= high
        assert span.until - span.at >= low or span.until == SETTINGS.seconds
        assert 0 <= span.service < SETTINGS.services
        by_service[span.service].append((span.at, span.until))
    for spans in by_service.values():
        ordered = sorted(spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(ordered))
    assert {span.mode for span in plan.faults} == set(FAULT_MODES)


def test_every_fault_is_one_the_emulator_accepts_and_fails_the_poll() -> None:
    for span in make_plan(SETTINGS).faults[:50]:
        fault = parse_fault(span.admin_body(SETTINGS.delay_seconds))
        assert fault.service == f"fleet_{span.service:05d}"
        assert fault.count is None  # until the soak clears it
        if span.mode == "status":
            assert fault.status == 500
        if span.mode == "delay":
            assert fault.seconds > 5.0  # past the fleet's read timeout


def test_changes_keep_each_service_within_its_bounds_with_fresh_addresses() -> None:
    plan = make_plan(SETTINGS)
    assert len(plan.changes) == 30 * SETTINGS.changes_per_minute
    current: dict[int, set[str]] = {}
    for change in sorted(plan.changes, key=lambda c: c.at):
        ips = current.setdefault(
            change.service, {f"10.0.{change.service}.{j}" for j in range(1, 11)}
        )
        assert (change.add is None) != (change.remove is None)
        if change.add is not None:
            assert change.add not in ips
            assert change.add.startswith(f"10.0.{change.service}.")
            ips.add(change.add)
        else:
            assert change.remove in ips
            ips.discard(change.remove)
        assert SETTINGS.min_instances <= len(ips) <= SETTINGS.max_instances
    assert any(c.add for c in plan.changes)
    assert any(c.remove for c in plan.changes)


# Restarts only: the faults and changes are drawn first and would only slow these down.
RESTARTS_ONLY = dataclasses.replace(SETTINGS, faults_per_minute=0, changes_per_minute=0)


def test_restarts_are_spaced_inside_their_window_with_both_signals() -> None:
    for seed in range(20):
        restarts = make_plan(dataclasses.replace(RESTARTS_ONLY, seed=seed)).restarts
        assert len(restarts) == 4
        times = [r.at for r in restarts]
        assert times == sorted(times)
        assert times[0] >= 0.1 * 1800 and times[-1] <= 0.75 * 1800
        assert all(b - a >= SETTINGS.restart_gap for a, b in itertools.pairwise(times))
        assert sorted(r.signal for r in restarts) == ["SIGKILL", "SIGKILL", "SIGTERM", "SIGTERM"]


def test_a_short_run_squeezes_the_gap_and_one_restart_may_be_either_signal() -> None:
    short = dataclasses.replace(RESTARTS_ONLY, seconds=240.0, restarts=3)
    times = [r.at for r in make_plan(short).restarts]
    assert len(times) == 3
    assert times[0] >= 24.0 and times[-1] <= 180.0
    signals = {
        make_plan(dataclasses.replace(RESTARTS_ONLY, restarts=1, seed=seed)).restarts[0].signal
        for seed in range(20)
    }
    assert signals == {"SIGTERM", "SIGKILL"}
    assert make_plan(dataclasses.replace(RESTARTS_ONLY, restarts=0)).restarts == ()


def test_the_self_test_is_planned_only_when_asked() -> None:
    assert make_plan(SETTINGS).sabotage is None
    sabotage = make_plan(dataclasses.replace(SETTINGS, sabotage=True)).sabotage
    assert sabotage is not None
    assert sabotage.at == pytest.approx(900.0)
    assert 0 <= sabotage.service < SETTINGS.services
