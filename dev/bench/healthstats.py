"""Pure numbers of the health scenario: the operator's check counters and lateness histogram
(read from its /metrics text), their differences over a window, and quantiles from buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from bench.stats import parse_samples

CHECKS = "directservice_health_checks_total"
LATENESS = "directservice_health_check_lateness_seconds"


class MetricsSource(Protocol):
    def metrics_text(self) -> str: ...


@dataclass(frozen=True)
class HealthCounters:
    """Cumulative at one moment, or the difference of two moments (`after - before`)."""

    passed: float
    failed: float
    lateness_buckets: tuple[tuple[float, float], ...]  # (le, cumulative count), +Inf last

    @property
    def checks(self) -> float:
        return self.passed + self.failed

    def __sub__(self, other: HealthCounters) -> HealthCounters:
        earlier = dict(other.lateness_buckets)
        return HealthCounters(
            self.passed - other.passed,
            self.failed - other.failed,
            tuple((le, n - earlier.get(le, 0.0)) for le, n in self.lateness_buckets),
        )

    def late_share(self, seconds: float) -> float:
        """Share of the checks started more than `seconds` late (`seconds` a bucket bound)."""
        total = self.lateness_buckets[-1][1] if self.lateness_buckets else 0.0
        within = dict(self.lateness_buckets).get(seconds)
        if not total or within is None:
            return math.nan
        return 1.0 - within / total

    def lateness_quantile(self, q: float) -> float:
        return bucket_quantile(self.lateness_buckets, q)

    @property
    def highest_bound(self) -> float:
        finite = [le for le, _ in self.lateness_buckets if not math.isinf(le)]
        return max(finite) if finite else math.nan


def parse_health(text: str) -> HealthCounters:
    passed = failed = 0.0
    for labels, value in parse_samples(text, CHECKS):
        if labels.get("result") == "pass":
            passed += value
        else:
            failed += value
    buckets = sorted(
        (float(labels["le"]), value)
        for labels, value in parse_samples(text, f"{LATENESS}_bucket")
        if "le" in labels
    )
    return HealthCounters(passed, failed, tuple(buckets))


def health_counters(operator: MetricsSource) -> HealthCounters:
    return parse_health(operator.metrics_text())


def bucket_quantile(buckets: tuple[tuple[float, float], ...], q: float) -> float:
    """The q-quantile (0..1) of a cumulative histogram, interpolated linearly within its
    bucket as Prometheus's histogram_quantile does (the first bucket starts at 0). A quantile
    in the +Inf bucket is inf: beyond the highest finite bound. NaN if empty."""
    if not buckets or buckets[-1][1] <= 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower_bound = lower_count = 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return math.inf
            inside = count - lower_count
            share = (rank - lower_count) / inside if inside else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound
