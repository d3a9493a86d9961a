"""The pure health verdict: thresholds of consecutive results, and the panic rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import HEALTHY, TargetHealth, in_panic, record, withheld

pytestmark = pytest.mark.unit

SPEC = HealthCheckSpec(unhealthy_threshold=3, healthy_threshold=2)


def verdicts(results: Iterable[bool], spec: HealthCheckSpec = SPEC) -> list[bool]:
    """`healthy` after each result, starting from a new target."""
    state, out = HEALTHY, []
    for ok in results:
        state = record(state, ok, spec)
        out.append(state.healthy)
    return out


def test_a_new_target_is_healthy_before_any_check() -> None:
    assert TargetHealth() == HEALTHY
    assert HEALTHY.healthy and (HEALTHY.passes, HEALTHY.failures) == (0, 0)


def test_it_turns_unhealthy_at_exactly_the_threshold_of_consecutive_failures() -> None:
    assert verdicts([False, False, False, False]) == [True, True, False, False]


def test_a_pass_in_between_restarts_the_count_of_failures() -> None:
    assert verdicts([False, False, True, False, False]) == [True] * 5
    assert verdicts([False, False, True, False, False, False]) == [True] * 5 + [False]


def test_it_returns_at_exactly_the_threshold_of_consecutive_passes() -> None:
    down = [False] * 3
    assert verdicts([*down, True, True, True])[3:] == [False, True, True]


def test_a_failure_in_between_restarts_the_count_of_passes() -> None:
    down = [False] * 3
    assert verdicts([*down, True, False, True])[3:] == [False, False, False]
    assert verdicts([*down, True, False, True, True])[3:] == [False, False, False, True]


def test_counters_are_consecutive_runs() -> None:
    state = HEALTHY
    for ok in (False, False, True, True, True):
        state = record(state, ok, SPEC)
    assert state == TargetHealth(healthy=True, passes=3, failures=0)
    state = record(state, False, SPEC)
    assert state == TargetHealth(healthy=True, passes=0, failures=1)


def test_thresholds_of_one_follow_every_result() -> None:
    spec = replace(SPEC, unhealthy_threshold=1, healthy_threshold=1)
    assert verdicts([False, True, False, False, True], spec) == [False, True, False, False, True]


@pytest.mark.parametrize("threshold", [0, -5])
def test_a_threshold_below_one_counts_as_one(threshold: int) -> None:
    spec = replace(SPEC, unhealthy_threshold=threshold, healthy_threshold=threshold)
    assert verdicts([True, False, True], spec) == [True, False, True]


def test_record_returns_a_new_state_and_leaves_the_old_one_alone() -> None:
    state = TargetHealth(healthy=True, passes=0, failures=2)
    after = record(state, False, SPEC)
    assert after is not state and not after.healthy
    assert state == TargetHealth(healthy=True, passes=0, failures=2)


@pytest.mark.parametrize(
    ("failing", "total", "percent", "panic"),
    [
        (5, 10, 50, False),  # exactly half: not more than half
        (6, 10, 50, True),
        (1, 2, 50, False),
        (2, 3, 50, True),
        (1, 1, 50, True),  # the only instance fails: publish it anyway
        (0, 10, 50, False),
        (0, 0, 50, False),  # nothing published
        (3, 0, 50, False),
        (1, 100, 1, False),
        (2, 100, 1, True),
        (10, 10, 100, False),  # 100: never, since no more than all can fail
        (10, 10, 0, False),  # 0: off too, not "panic as soon as one fails"
        (1, 10, 0, False),
        (9, 10, 90, False),
        (10, 10, 99, True),
    ],
)
def test_panic_when_strictly_more_than_the_share_fails(
    failing: int, total: int, percent: int, panic: bool
) -> None:
    assert in_panic(failing, total, percent) is panic


def test_withheld_is_the_failing_set_unless_in_panic() -> None:
    failing = {("10.0.0.1", 80), ("10.0.0.2", 80)}
    assert withheld(failing, 10, 50) == frozenset(failing)
    assert withheld(failing, 3, 50) == frozenset()  # two of three fail: publish all
    assert withheld(set(), 3, 50) == frozenset()
