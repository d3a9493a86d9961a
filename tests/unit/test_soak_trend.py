"""The soak's least-squares trend: one slope shared by segments with their own intercepts."""

from __future__ import annotations

import math
import random

import pytest

from soak.trend import Point, pooled_trend, within

pytestmark = pytest.mark.unit


def _line(start: float, seconds: float, step: float, base: float, per_min: float) -> list[Point]:
    count = int(seconds / step) + 1
    return [(start + k * step, base + per_min * (k * step) / 60.0) for k in range(count)]


def test_a_straight_line_gives_its_slope_and_no_noise() -> None:
    trend = pooled_trend([_line(0.0, 600.0, 5.0, 1000.0, 12.5)])
    assert trend.slope_per_min == pytest.approx(12.5)
    assert trend.noise == pytest.approx(0.0, abs=1e-9)
    assert trend.points == 121
    assert trend.segments == 1
    assert trend.minutes == pytest.approx(10.0)


def test_jumps_between_segments_do_not_count_as_growth() -> None:
    # Each restart starts lower (a fresh process); within each, memory is flat.
    segments = [
        _line(0.0, 300.0, 5.0, 200_000.0, 0.0),
        _line(400.0, 300.0, 5.0, 150_000.0, 0.0),
        _line(800.0, 300.0, 5.0, 180_000.0, 0.0),
    ]
    pooled = pooled_trend(segments)
    assert pooled.slope_per_min == pytest.approx(0.0, abs=1e-9)
    assert pooled.segments == 3
    # Fitting the same points as one line would report the jumps as a (negative) slope.
    naive = pooled_trend([[p for seg in segments for p in seg]])
    assert naive.slope_per_min < -1000


def test_the_shared_slope_is_found_despite_different_intercepts() -> None:
    segments = [_line(0.0, 300.0, 5.0, 9e4, 40.0), _line(500.0, 600.0, 5.0, 7e4, 40.0)]
    assert pooled_trend(segments).slope_per_min == pytest.approx(40.0)


def test_noise_is_the_residual_standard_deviation() -> None:
    rng = random.Random(7)
    points = [(t, 500.0 + 0.5 * t + rng.gauss(0.0, 30.0)) for t in range(0, 3600, 5)]
    trend = pooled_trend([points])
    assert trend.slope_per_min == pytest.approx(30.0, abs=1.0)
    assert trend.noise == pytest.approx(30.0, rel=0.1)


def test_too_few_points_give_nan_not_a_number_that_looks_measured() -> None:
    assert math.isnan(pooled_trend([]).slope_per_min)
    one = pooled_trend([[(0.0, 5.0)]])
    assert math.isnan(one.slope_per_min)
    assert one.segments == 0
    two = pooled_trend([[(0.0, 5.0), (60.0, 6.0)]])
    assert two.slope_per_min == pytest.approx(1.0)
    assert math.isnan(two.noise)  # no degree of freedom left


def test_within_keeps_the_window_inclusive() -> None:
    points = [(float(t), float(t)) for t in range(10)]
    assert [t for t, _ in within(points, 2.0, 4.0)] == [2.0, 3.0, 4.0]
