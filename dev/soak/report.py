"""The soak's JSON summary, built from what a run recorded (pure: no I/O)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from soak.chaos import SabotageRecord
from soak.checker import LossReport, Violation
from soak.oplog import Failures, failures_between
from soak.plan import Plan
from soak.restarts import RestartRecord
from soak.sampler import Sample
from soak.summary import (
    apiserver_delta,
    cpu_load,
    cumulative_writes,
    per_minute,
    poll_rate,
    restart_json,
    series,
    steady_segments,
    steady_trend,
    writes_by_kind,
)

SHOWN_VIOLATIONS = 20


@dataclass(frozen=True)
class SoakRun:
    settings: Mapping[str, Any]
    meta: Mapping[str, str]
    origin: float  # time.time() the fleet was synced and the chaos began
    end: float
    sync_seconds: float
    warmup: float
    samples: Sequence[Sample]
    restarts: Sequence[RestartRecord]
    loss: LossReport
    final: LossReport  # the check at the end, after the quiet tail
    plan: Plan
    sabotage: SabotageRecord | None = None
    sabotage_restored: float | None = None  # when its service published its answer again
    emulator_status: Mapping[str, int] = field(default_factory=dict)
    watch: Mapping[str, Any] = field(default_factory=dict)
    errors: Sequence[str] = ()  # the chaos or a restart failed: the soak did not do its job
    sampler_errors: Sequence[str] = ()  # a sample missed (a process going away under it)
    poll_failures: Failures = field(default_factory=dict)  # from the operator's logs
    failure_summary: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    failure_window: float = 60.0  # how far back from a violation its poll failures count
    unprovoked_failures: Sequence[float] = ()  # times of failed polls with no fault injected


def violation_json(v: Violation, run: SoakRun) -> dict[str, Any]:
    return {
        "service": v.service,
        "at_minutes": round((v.at - run.origin) / 60.0, 3),
        "kind": v.kind,
        "published": v.published,
        "expected": v.expected,
        "missing": list(v.missing),
        "extra": list(v.extra),
        # The operator's failed polls of it just before: the emulator answered, it did not
        # take the answer in (e.g. read timeouts while starved of CPU).
        "operator_poll_failures": failures_between(
            run.poll_failures, v.service, v.at - run.failure_window, v.at
        ),
    }


def self_test(run: SoakRun, window: float) -> dict[str, Any] | None:
    """Did the checker see the slice deletion the self-test made, and nothing else?"""
    if run.sabotage is None:
        return None
    s = run.sabotage
    caught = [
        v for v in run.loss.violations if v.service == s.service and s.at <= v.at <= s.at + window
    ]
    others = [v for v in run.loss.violations if v not in caught]
    return {
        "service": s.service,
        "at_minutes": round((s.at - run.origin) / 60.0, 3),
        "slices_deleted": len(s.slices),
        "detected": bool(caught),
        "violations_caught": len(caught),
        "other_violations": len(others),
        "restored_after_s": (
            None if run.sabotage_restored is None else round(run.sabotage_restored - s.at, 2)
        ),
        "passed": bool(caught) and not others and run.final.unsettled == 0,
    }


def loss_json(run: SoakRun) -> dict[str, Any]:
    loss = run.loss
    kinds = Counter(v.kind for v in loss.violations)
    coverage = 100.0 * loss.checks / loss.check_slots if loss.check_slots else math.nan
    return {
        "total": loss.lost + run.final.unsettled,
        "unexplained_states": kinds.get("unexplained", 0),
        "unsettled_checks": kinds.get("unsettled", 0),
        # Not losses: an older answer kept while the operator's own polls of it failed.
        "late_while_failing": len(loss.late),
        "services_late": len({v.service for v in loss.late}),
        "services_with_loss": list(loss.services_with_loss),
        "published_states_judged": loss.states_judged,
        "answer_versions": loss.versions,
        "versions_published": loss.versions_reached,
        "settled_checks": loss.checks,
        "check_slots": loss.check_slots,
        "settled_coverage_pct": round(coverage, 2),
        "final": {
            "services": run.final.services,
            "settled": run.final.checks,
            "mismatched": run.final.unsettled,
            "violations": [
                violation_json(v, run) for v in run.final.violations if v.kind == "unsettled"
            ][:SHOWN_VIOLATIONS],
        },
        "violations": [violation_json(v, run) for v in loss.violations[:SHOWN_VIOLATIONS]],
        "late": [violation_json(v, run) for v in loss.late[:SHOWN_VIOLATIONS]],
    }


def build_summary(run: SoakRun) -> dict[str, Any]:
    segments = steady_segments(run.restarts, run.origin, run.end, run.warmup)
    rss = steady_trend(run.samples, run.origin, "rss_kib", segments)
    fds = steady_trend(run.samples, run.origin, "fds", segments)
    rss_values = [s.rss_kib for s in run.samples if s.rss_kib is not None]
    fd_values = [s.fds for s in run.samples if s.fds is not None]
    by_kind = writes_by_kind(run.samples)
    apiserver, seconds = apiserver_delta(run.samples, run.origin)
    ours = [(t, w) for t, w in cumulative_writes(run.samples) if t >= run.origin]
    ours_after = ours[-1][1] - ours[0][1] if len(ours) >= 2 else 0
    ours_seconds = ours[-1][0] - ours[0][0] if len(ours) >= 2 else 0.0
    minutes = (run.end - run.origin) / 60.0
    first_minute = math.floor(min(((s.at - run.origin) / 60.0 for s in run.samples), default=0.0))
    modes = Counter(f.mode for f in run.plan.faults)
    return {
        "settings": dict(run.settings),
        "machine": dict(run.meta),
        "sync_seconds": round(run.sync_seconds, 1),
        "minutes": round(minutes, 2),
        "steady_segments": [
            {"generation": g.generation, "from_min": g.start / 60.0, "to_min": g.end / 60.0}
            for g in segments
        ],
        "rss_kib": {
            **rss,
            "max": max(rss_values, default=0),
            "last": rss_values[-1] if rss_values else 0,
        },
        "fds": {**fds, "max": max(fd_values, default=0)},
        "writes": {
            "operator_by_kind": by_kind,
            "operator_total": sum(by_kind.values()),
            "operator_after_sync": ours_after,
            "operator_per_minute": (
                round(60.0 * ours_after / ours_seconds, 1) if ours_seconds else math.nan
            ),
            "apiserver_after_sync": apiserver,
            "apiserver_after_sync_total": sum(apiserver.values()),
            "apiserver_per_minute": (
                round(60.0 * sum(apiserver.values()) / seconds, 1) if seconds else math.nan
            ),
        },
        "cpu": cpu_load(run.samples, run.origin, segments),
        "polls": poll_rate(
            run.samples,
            run.origin,
            segments,
            int(run.settings["services"]),
            float(run.settings["interval"]),
        ),
        "restarts": [restart_json(r, run.origin, run.samples) for r in run.restarts],
        "chaos": {
            "faults": len(run.plan.faults),
            "faults_by_mode": dict(sorted(modes.items())),
            "changes": len(run.plan.changes),
            "gained": sum(1 for c in run.plan.changes if c.add is not None),
            "lost": sum(1 for c in run.plan.changes if c.remove is not None),
            "restarts_planned": [r.signal for r in run.plan.restarts],
        },
        "emulator_answers_by_status": dict(run.emulator_status),
        "operator_poll_failures": {k: dict(v) for k, v in run.failure_summary.items()},
        "watch": dict(run.watch),
        "loss": loss_json(run),
        "self_test": self_test(run, window=60.0),
        "errors": list(run.errors),
        "sampler_errors": list(run.sampler_errors[:SHOWN_VIOLATIONS]),
        "series": series(run.samples, run.origin, int(run.meta.get("cores", "0") or 0) or 2),
        "unprovoked_failures_per_minute": {
            "from_minute": first_minute,
            "counts": per_minute(run.unprovoked_failures, run.origin, first_minute, minutes),
        },
    }
