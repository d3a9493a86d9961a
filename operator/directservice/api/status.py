"""DirectService status and Events as a pure function of the last status and a poll result.

The result equals the input whenever nothing the user should see has changed, so the
caller writes status only on a difference: steady state costs no API writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from directservice.api.reasons import EventReason, Reason

HEALTHY = "DiscoveryHealthy"
READY = "Ready"
PANIC: str = Reason.HEALTH_PANIC  # the condition type is the word of its True reason
STALE = "Stale"  # only with spec.maxStaleness (HealthPanic only with spec.healthCheck)
OVERLOADED: str = Reason.OVERLOADED  # only once polls have run late (core/overload.py)
BAD_WHEN_TRUE = (PANIC, STALE, OVERLOADED)
MAX_NAMED_EXCLUSIONS = 64
MAX_NAMED_CONFLICTS = 16


@dataclass(frozen=True)
class PollResult:
    """What one poll achieved. `failure` set: discovery failed, nothing was changed."""

    generation: int
    provider: str
    now: str  # RFC 3339, UTC
    ready: int = 0
    total: int = 0
    published_changed: bool = False
    failure_reason: Reason | None = None
    failure_message: str | None = None
    dropped: int = 0
    dropped_names: tuple[str, ...] = ()
    effective_interval: str | None = None  # set when a shared rate budget stretches polls
    rate_limited_message: str | None = None
    retry_after: float | None = None
    blocked_reason: Reason | None = None  # e.g. a Service of that name that is not ours
    blocked_message: str | None = None
    excluded: tuple[str, ...] = ()  # "ip:port" of the published endpoints spec.exclude names
    panic: bool | None = None  # None: no health checks configured
    panic_threshold: int = 50
    stale: bool | None = None  # None: no spec.maxStaleness
    max_staleness: str = ""
    # Objects of the DirectService's name it does not own (left alone), in words; current
    # whatever the poll's outcome, as they come from the watches.
    conflicts: tuple[str, ...] = ()
    shard: int | None = None  # None: not sharded
    overloaded: bool | None = None  # None: no verdict yet; the condition stays as it is


@dataclass(frozen=True)
class EventSpec:
    type: str  # Normal | Warning
    reason: Reason | EventReason
    message: str


def _condition(
    old: Sequence[Mapping[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    now: str,
    generation: int,
) -> dict[str, Any]:
    previous = next((c for c in old if c.get("type") == kind), None)
    changed_status = previous is None or previous.get("status") != status
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            now if previous is None or changed_status else previous.get("lastTransitionTime", now)
        ),
        "observedGeneration": generation,
    }


def next_status(
    old: Mapping[str, Any], result: PollResult
) -> tuple[dict[str, Any], list[EventSpec]]:
    """The status after `result`, and the Events for condition transitions."""
    # A status someone else wrote may hold anything: only well-formed conditions are kept.
    raw_conditions = old.get("conditions")
    conditions = [
        c
        for c in (raw_conditions if isinstance(raw_conditions, list) else [])
        if isinstance(c, Mapping)
    ]
    status: dict[str, Any] = {
        key: value for key, value in old.items() if key not in ("conditions",)
    }
    status["provider"] = result.provider
    status["observedGeneration"] = result.generation
    events: list[EventSpec] = []

    if result.blocked_reason:
        health = ("False", result.blocked_reason, result.blocked_message or "")
    elif result.failure_reason:
        health = ("False", result.failure_reason, result.failure_message or "")
    else:
        health = (
            ("True", Reason.RATE_LIMITED, result.rate_limited_message)
            if result.rate_limited_message  # healthy, polled less often than asked
            else ("True", Reason.DISCOVERY_SUCCEEDED, "the last discovery answer was accepted")
        )
        status["readyEndpoints"] = result.ready
        status["totalEndpoints"] = result.total
        status["droppedEntries"] = result.dropped
        was_healthy = any(
            c.get("type") == HEALTHY and c.get("status") == "True" for c in conditions
        )
        if result.published_changed or not was_healthy or "lastSuccessfulSync" not in old:
            status["lastSuccessfulSync"] = result.now
        if result.dropped and result.published_changed:
            events.append(
                EventSpec(
                    "Warning",
                    EventReason.ENTRIES_DROPPED,
                    f"dropped {result.dropped} invalid entries: " + "; ".join(result.dropped_names),
                )
            )
    if result.effective_interval:
        status["effectivePollInterval"] = result.effective_interval
    elif not result.failure_reason and status.get("effectivePollInterval") is not None:
        status["effectivePollInterval"] = None  # merge patch: no longer stretched

    if not result.failure_reason and not result.blocked_reason:
        named = list(result.excluded[:MAX_NAMED_EXCLUSIONS])
        if named or status.get("excludedEndpoints") is not None:
            status["excludedEndpoints"] = named or None  # merge patch: none excluded now

    if result.shard is not None or status.get("shard") is not None:
        status["shard"] = result.shard  # merge patch: None removes it (sharding turned off)

    conflicts = [text[:1024] for text in result.conflicts[:MAX_NAMED_CONFLICTS]]  # the CRD's caps
    if conflicts or status.get("conflicts") is not None:
        status["conflicts"] = conflicts or None  # merge patch: none left

    ready = status.get("readyEndpoints", 0)
    readiness = (
        ("True", Reason.ENDPOINTS_PUBLISHED, f"{ready} ready endpoints published")
        if ready
        else ("False", Reason.NO_READY_ENDPOINTS, "no ready endpoints are published yet")
    )
    new_conditions = [
        _condition(conditions, HEALTHY, *health, result.now, result.generation),
        _condition(conditions, READY, *readiness, result.now, result.generation),
    ]
    optional = _optional_conditions(result)
    overload = _overload_condition(result, conditions)
    if overload is not None:
        optional.append((OVERLOADED, overload))
    new_conditions += [
        _condition(conditions, kind, *value, result.now, result.generation)
        for kind, value in optional
    ]
    events += _transition_events(conditions, new_conditions)
    # One Warning per new set of conflicts, unless a condition turning to Conflict said it.
    said = any(event.reason == Reason.CONFLICT for event in events)
    if conflicts and conflicts != old.get("conflicts") and not said:
        events.append(EventSpec("Warning", Reason.CONFLICT, "; ".join(conflicts)))
    # A condition whose feature was switched off goes; conditions of other writers stay.
    mine = {HEALTHY, READY, PANIC, STALE} | ({OVERLOADED} if overload is not None else set())
    others = [c for c in conditions if c.get("type") not in mine]
    status["conditions"] = new_conditions + others
    return status, events


def _optional_conditions(result: PollResult) -> list[tuple[str, tuple[str, str, str]]]:
    """HealthPanic and Stale, each only while its feature is configured. Messages are fixed
    per state, so the status changes only when a condition turns."""
    optional: list[tuple[str, tuple[str, str, str]]] = []
    if result.panic is not None:
        optional.append(
            (
                PANIC,
                (
                    "True",
                    Reason.HEALTH_PANIC,
                    f"more than {result.panic_threshold}% of the instances fail their health "
                    "checks at once; all are kept published",
                )
                if result.panic
                else (
                    "False",
                    Reason.HEALTH_CHECKS_PASSING,
                    "instances failing their health checks are published not ready",
                ),
            )
        )
    if result.stale is not None:
        optional.append(
            (
                STALE,
                (
                    "True",
                    Reason.DISCOVERY_STALE,
                    f"discovery has failed for more than {result.max_staleness}; the last "
                    "accepted answer stays published",
                )
                if result.stale
                else ("False", Reason.DISCOVERY_FRESH, "discovery answered within maxStaleness"),
            )
        )
    return optional


def _transition_events(
    conditions: Sequence[Mapping[str, Any]], new_conditions: Sequence[Mapping[str, Any]]
) -> list[EventSpec]:
    """One Event per condition that turned. A condition appearing with good news says
    nothing but Ready: a new DirectService posts one Event (EndpointsPublished), not one per
    condition, which at a start-up of thousands is thousands of writes."""
    events: list[EventSpec] = []
    for new in new_conditions:
        old_cond = next((c for c in conditions if c.get("type") == new["type"]), None)
        transitioned = old_cond is None or (old_cond.get("status"), old_cond.get("reason")) != (
            new["status"],
            new["reason"],
        )
        # HealthPanic, Stale and Overloaded are bad news when True; the others when False.
        bad = new["status"] == ("True" if new["type"] in BAD_WHEN_TRUE else "False")
        quiet_start = old_cond is None and not bad and new["type"] != READY
        if transitioned and not quiet_start:
            events.append(
                EventSpec(
                    "Warning" if bad else "Normal",
                    new["reason"],
                    new["message"],
                )
            )
    return events


def _overload_condition(
    result: PollResult, conditions: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str] | None:
    """Overloaded=True once polls have run late; False once on time again, only where it was
    ever set. None: no verdict yet, whatever is there stays (a restart decides anew)."""
    if result.overloaded is None:
        return None
    if result.overloaded:
        return (
            "True",
            Reason.OVERLOADED,
            "the operator runs its polls late, so they are stretched; this is not a discovery "
            "failure (see directservice_event_loop_lag_seconds)",
        )
    if any(c.get("type") == OVERLOADED for c in conditions):
        return ("False", Reason.POLLS_ON_TIME, "polls start on time")
    return None


def status_differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Compare only the fields we own: kopf or other writers may add their own."""
    return any(old.get(key) != value for key, value in new.items())
