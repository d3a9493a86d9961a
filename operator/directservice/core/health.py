"""Active health checks, the pure part: the verdict on one target and the panic rule.

Each published instance (ip, port) has a `TargetHealth`. A new target starts healthy, so
the first publish of an instance never waits for a check. It turns unhealthy after
`unhealthy_threshold` consecutive failed checks and healthy again after `healthy_threshold`
consecutive passes: one lost packet never takes an instance out of DNS, and a flapping one
has to prove itself before it returns.

Panic: when more than `panic_threshold_percent` of a service's targets fail at once, the
likelier cause is the checker's own path (a network policy, a saturated node) rather than
most instances dying together, so every instance is published as if healthy (HealthPanic).

Usage, once per finished check (the checker keeps the returned state):

    state = record(state, ok, spec)
    if state.healthy != before.healthy: the failing set changed

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

from directservice.api.spec import HealthCheckSpec
from directservice.core.guard import EndpointId

__all__ = ["EndpointId", "TargetHealth", "in_panic", "record", "withheld"]


@dataclass(frozen=True, slots=True)
class TargetHealth:
    """The verdict on one target and the run of identical check results behind it."""

    healthy: bool = True
    passes: int = 0  # consecutive passed checks (0 after any failure)
    failures: int = 0  # consecutive failed checks (0 after any pass)


HEALTHY = TargetHealth()


def record(state: TargetHealth, ok: bool, spec: HealthCheckSpec) -> TargetHealth:
    """The state after one more check result. A threshold below 1 acts as 1: a count
    after a result is at least 1."""
    if ok:
        passes = state.passes + 1
        healthy = state.healthy or passes >= spec.healthy_threshold
        return TargetHealth(healthy=healthy, passes=passes, failures=0)
    failures = state.failures + 1
    healthy = state.healthy and failures < spec.unhealthy_threshold
    return TargetHealth(healthy=healthy, passes=0, failures=failures)


def in_panic(failing: int, total: int, panic_threshold_percent: int) -> bool:
    """Whether strictly more than `panic_threshold_percent` of `total` targets fail.

    The default 50 means "more than half failing: publish them all". 100 can never be
    exceeded, so it switches panic off. 0 switches it off too, rather than meaning "panic
    as soon as one target fails": that reading would publish every failing instance the
    moment any fails, which defeats the checks altogether. No targets: no panic.
    """
    if total <= 0 or failing <= 0 or panic_threshold_percent <= 0:
        return False
    return failing * 100 > panic_threshold_percent * total


def withheld(
    failing: Set[EndpointId], total: int, panic_threshold_percent: int
) -> frozenset[EndpointId]:
    """The targets to publish as not ready: the failing ones, or none in panic."""
    if in_panic(len(failing), total, panic_threshold_percent):
        return frozenset()
    return frozenset(failing)
