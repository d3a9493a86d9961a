"""Least-squares trends of a sampled quantity (RSS, open descriptors) over the steady parts.

Each operator process is its own segment (a restart starts from scratch), so the fit is one
slope shared by all segments with an intercept per segment: growth within processes, not
the jumps between them. The noise is the residual standard deviation of that fit, so a
slope smaller than noise / (minutes observed) says little. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (seconds, value)


@dataclass(frozen=True)
class Trend:
    slope_per_min: float  # value units per minute; NaN when it cannot be fitted
    noise: float  # residual standard deviation, value units
    points: int
    segments: int
    minutes: float  # time covered by the segments

    def to_json(self) -> dict[str, float | int]:
        return {
            "slope_per_min": self.slope_per_min,
            "noise": self.noise,
            "points": self.points,
            "segments": self.segments,
            "minutes": self.minutes,
        }


def pooled_trend(segments: Sequence[Sequence[Point]]) -> Trend:
    """The common slope of `segments` (each with its own intercept) and its residual noise.
    Segments of fewer than two points carry no slope and are left out."""
    used = [seg for seg in segments if len(seg) >= 2]
    points = sum(len(seg) for seg in used)
    minutes = sum(max(t for t, _ in seg) - min(t for t, _ in seg) for seg in used) / 60.0
    sxx = sxy = 0.0
    centred: list[list[Point]] = []
    for seg in used:
        mean_t = sum(t for t, _ in seg) / len(seg)
        mean_y = sum(y for _, y in seg) / len(seg)
        rows = [(t - mean_t, y - mean_y) for t, y in seg]
        centred.append(rows)
        sxx += sum(dt * dt for dt, _ in rows)
        sxy += sum(dt * dy for dt, dy in rows)
    if sxx <= 0:
        return Trend(math.nan, math.nan, points, len(used), minutes)
    slope = sxy / sxx  # per second
    residuals = sum((dy - slope * dt) ** 2 for rows in centred for dt, dy in rows)
    freedom = points - len(used) - 1  # one intercept per segment plus the slope
    noise = math.sqrt(residuals / freedom) if freedom > 0 else math.nan
    return Trend(slope * 60.0, noise, points, len(used), minutes)


def within(points: Sequence[Point], start: float, end: float) -> list[Point]:
    return [(t, y) for t, y in points if start <= t <= end]
