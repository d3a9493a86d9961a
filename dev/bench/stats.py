"""Pure numbers for the benchmark: percentiles, poll lateness, API server metrics, naive writes.

No I/O here, so every formula the report depends on is unit-tested on its own.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Verbs apiserver_request_total uses for requests that change state.
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
# Resources only the operator writes in the bench cluster (everything else is the API
# server's own housekeeping, e.g. its identity Lease).
OPERATOR_RESOURCES = frozenset({"directservices", "services", "endpointslices", "events"})

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks; NaN if empty."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Summary:
    """Distribution of a sample; all fields NaN (and n 0) for an empty one."""

    n: int
    mean: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            n=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p90=percentile(values, 90),
            p99=percentile(values, 99),
            max=max(values),
        )

    def scaled(self, factor: float) -> Summary:
        """The same distribution in other units (e.g. seconds → milliseconds)."""
        return Summary(
            self.n,
            self.mean * factor,
            self.p50 * factor,
            self.p90 * factor,
            self.p99 * factor,
            self.max * factor,
        )


# -- polls and lateness ------------------------------------------------------------------


def poll_gaps(times_by_service: Mapping[str, Iterable[float]]) -> list[float]:
    """Seconds between consecutive polls of each service (a service polled once adds none)."""
    gaps: list[float] = []
    for times in times_by_service.values():
        ordered = sorted(times)
        gaps.extend(b - a for a, b in itertools.pairwise(ordered))
    return gaps


def lateness(gaps: Iterable[float], interval: float) -> list[float]:
    """gap - interval per gap. The operator draws each delay from interval x U(0.95, 1.05),
    so a punctual timer yields values spread evenly over ±5 % of the interval (mean 0);
    anything beyond that spread, and the mean, is real lateness."""
    return [gap - interval for gap in gaps]


def lateness_beyond_jitter(
    gaps: Iterable[float], interval: float, jitter: float = 0.05
) -> list[float]:
    """max(0, gap - interval x (1 + jitter)): lateness no jitter draw can explain (a lower
    bound of the true lateness of each poll)."""
    bound = interval * (1.0 + jitter)
    return [max(0.0, gap - bound) for gap in gaps]


def scheduled_polls(services: int, window: float, interval: float) -> float:
    """Polls a punctual fleet makes in `window` seconds (jitter has mean zero)."""
    return services * window / interval


def times_by_service(
    log: Iterable[Mapping[str, object]], start: float, end: float, services: Iterable[str]
) -> dict[str, list[float]]:
    """Emulator request-log entries of `services` answered within [start, end]."""
    wanted = set(services)
    found: dict[str, list[float]] = {name: [] for name in wanted}
    for entry in log:
        when = entry.get("time")
        name = entry.get("service")
        if not isinstance(name, str) or name not in wanted or not isinstance(when, int | float):
            continue
        if start <= when <= end:
            found[name].append(float(when))
    return found


# -- API server metrics ------------------------------------------------------------------


def parse_samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of `metric` in a Prometheus text exposition, as (labels, value)."""
    samples: list[tuple[dict[str, str], float]] = []
    for line in text.splitlines():
        if not line.startswith(metric):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != metric:
            continue
        labels = {
            key: value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            for key, value in _LABEL.findall(match.group("labels") or "")
        }
        samples.append((labels, float(match.group("value"))))
    return samples


RequestKey = tuple[str, str, str]  # (verb, resource, subresource)


def request_counts(text: str) -> Counter[RequestKey]:
    """apiserver_request_total summed over codes, groups and scopes."""
    counts: Counter[RequestKey] = Counter()
    for labels, value in parse_samples(text, "apiserver_request_total"):
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        counts[key] += int(value)
    return counts


def write_delta(
    before: Mapping[RequestKey, int],
    after: Mapping[RequestKey, int],
    resources: Iterable[str] | None = None,
) -> Counter[RequestKey]:
    """Write requests between two snapshots, optionally only for some resources."""
    allowed = None if resources is None else set(resources)
    delta: Counter[RequestKey] = Counter()
    for key, value in after.items():
        verb, resource, _ = key
        if verb not in WRITE_VERBS or (allowed is not None and resource not in allowed):
            continue
        if value - before.get(key, 0) > 0:
            delta[key] = value - before.get(key, 0)
    return delta


def by_verb(delta: Mapping[RequestKey, int]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for (verb, _, _), value in delta.items():
        out[verb] += value
    return dict(sorted(out.items()))


def by_resource(delta: Mapping[RequestKey, int]) -> dict[str, int]:
    """Counts keyed "VERB resource[/subresource]"."""
    out: dict[str, int] = {}
    for (verb, resource, sub), value in sorted(delta.items()):
        out[f"{verb} {resource}{'/' + sub if sub else ''}"] = value
    return out


# -- the naive baseline ------------------------------------------------------------------


def naive_writes(slices_before: int, slices_after: int) -> int:
    """Writes of a rewrite-all strategy for one change: every slice the service ends up
    with is written (update or create) and every slice it no longer needs is deleted."""
    return slices_after + max(0, slices_before - slices_after)


def ratio(ours: float, naive: float) -> float:
    return math.nan if naive == 0 else ours / naive
