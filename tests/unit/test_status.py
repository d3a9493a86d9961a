"""Status and Events across a sequence of polls: writes and Events only on change."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.api.status import (
    HEALTHY,
    READY,
    EventSpec,
    PollResult,
    next_status,
    status_differs,
)

pytestmark = pytest.mark.unit

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:00:05Z"
T2 = "2026-01-01T00:00:10Z"
T3 = "2026-01-01T00:00:15Z"
T4 = "2026-01-01T00:00:20Z"


def ok(now: str, **fields: Any) -> PollResult:
    values: dict[str, Any] = {"ready": 3, "total": 4, "published_changed": False}
    values.update(fields)
    return PollResult(generation=1, provider="paiEas", now=now, **values)


def failed(now: str, reason: str = "Timeout", message: str = "no answer in time") -> PollResult:
    return PollResult(
        generation=1, provider="paiEas", now=now, failure_reason=reason, failure_message=message
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


@pytest.fixture
def healthy() -> dict[str, Any]:
    status, _ = next_status({}, ok(T0, published_changed=True))
    return status


def test_first_success(healthy: dict[str, Any]) -> None:
    status, events = next_status({}, ok(T0, published_changed=True))
    assert status == healthy
    assert condition(status, HEALTHY)["status"] == "True"
    assert condition(status, HEALTHY)["reason"] == "DiscoverySucceeded"
    assert condition(status, READY)["status"] == "True"
    assert condition(status, READY)["reason"] == "EndpointsPublished"
    assert condition(status, READY)["lastTransitionTime"] == T0
    assert (status["readyEndpoints"], status["totalEndpoints"]) == (3, 4)
    assert status["lastSuccessfulSync"] == T0
    assert status["provider"] == "paiEas"
    assert status["observedGeneration"] == 1
    # One Event for a new DirectService: Healthy appearing True says nothing Ready does not.
    assert [(e.type, e.reason) for e in events] == [("Normal", "EndpointsPublished")]


def test_first_success_without_ready_endpoints_is_not_ready() -> None:
    status, events = next_status({}, ok(T0, ready=0, published_changed=True))
    assert condition(status, HEALTHY)["status"] == "True"
    assert condition(status, READY)["status"] == "False"
    assert ("Warning", "NoReadyEndpoints") in [(e.type, e.reason) for e in events]


def test_identical_poll_changes_nothing(healthy: dict[str, Any]) -> None:
    status, events = next_status(healthy, ok(T1))
    assert events == []
    assert status == healthy
    assert not status_differs(healthy, status)
    assert status["lastSuccessfulSync"] == T0


def test_published_change_refreshes_last_successful_sync(healthy: dict[str, Any]) -> None:
    status, events = next_status(healthy, ok(T1, ready=5, total=5, published_changed=True))
    assert status_differs(healthy, status)
    assert status["lastSuccessfulSync"] == T1
    assert status["readyEndpoints"] == 5
    # Still Ready with the same reason: the transition time stays, no Event.
    assert condition(status, READY)["lastTransitionTime"] == T0
    assert events == []


def test_failure_after_success(healthy: dict[str, Any]) -> None:
    status, events = next_status(healthy, failed(T1))
    health = condition(status, HEALTHY)
    assert (health["status"], health["reason"], health["message"]) == (
        "False",
        "Timeout",
        "no answer in time",
    )
    assert health["lastTransitionTime"] == T1
    # Last known good stays published: counts, Ready and the last sync do not move.
    assert (status["readyEndpoints"], status["totalEndpoints"]) == (3, 4)
    assert status["lastSuccessfulSync"] == T0
    assert condition(status, READY) == condition(healthy, READY)
    assert events == [EventSpec("Warning", "Timeout", "no answer in time")]
    assert status_differs(healthy, status)


def test_same_failure_again_is_silent(healthy: dict[str, Any]) -> None:
    first, _ = next_status(healthy, failed(T1))
    second, events = next_status(first, failed(T2))
    assert events == []
    assert second == first
    assert not status_differs(first, second)


def test_a_different_failure_reason_is_an_event(healthy: dict[str, Any]) -> None:
    first, _ = next_status(healthy, failed(T1))
    second, events = next_status(first, failed(T2, "ServerError", "answered 503"))
    assert events == [EventSpec("Warning", "ServerError", "answered 503")]
    health = condition(second, HEALTHY)
    assert (health["reason"], health["message"]) == ("ServerError", "answered 503")
    assert health["lastTransitionTime"] == T1  # still False: no status transition
    assert status_differs(first, second)


def test_recovery(healthy: dict[str, Any]) -> None:
    down, _ = next_status(healthy, failed(T1))
    down, _ = next_status(down, failed(T2))
    up, events = next_status(down, ok(T3))
    assert [(e.type, e.reason) for e in events] == [("Normal", "DiscoverySucceeded")]
    assert condition(up, HEALTHY)["status"] == "True"
    assert condition(up, HEALTHY)["lastTransitionTime"] == T3
    assert up["lastSuccessfulSync"] == T3  # refreshed even though nothing was republished
    steady, events = next_status(up, ok(T4))
    assert (steady, events) == (up, [])


def test_first_poll_failing() -> None:
    status, events = next_status({}, failed(T0, "NotFound", "unknown service"))
    assert condition(status, HEALTHY)["reason"] == "NotFound"
    assert condition(status, READY)["status"] == "False"
    assert "lastSuccessfulSync" not in status
    assert {(e.type, e.reason) for e in events} == {
        ("Warning", "NotFound"),
        ("Warning", "NoReadyEndpoints"),
    }


def test_blocked_takes_precedence(healthy: dict[str, Any]) -> None:
    result = PollResult(
        generation=1,
        provider="paiEas",
        now=T1,
        ready=3,
        total=4,
        blocked_reason="ServiceConflict",
        blocked_message="Service mnist is not ours",
    )
    status, events = next_status(healthy, result)
    assert condition(status, HEALTHY)["reason"] == "ServiceConflict"
    assert status["lastSuccessfulSync"] == T0
    assert [e.reason for e in events] == ["ServiceConflict"]


def test_dropped_entries_event_only_when_published_changes(healthy: dict[str, Any]) -> None:
    result = ok(
        T1, dropped=2, dropped_names=("127.0.0.1:80", "010.0.0.1:80"), published_changed=True
    )
    status, events = next_status(healthy, result)
    assert status["droppedEntries"] == 2
    assert events == [
        EventSpec(
            "Warning", "EntriesDropped", "dropped 2 invalid entries: 127.0.0.1:80; 010.0.0.1:80"
        )
    ]
    again, events = next_status(status, ok(T2, dropped=2, dropped_names=result.dropped_names))
    assert events == []
    assert not status_differs(status, again)


def test_generation_change_is_a_difference(healthy: dict[str, Any]) -> None:
    result = PollResult(generation=2, provider="paiEas", now=T1, ready=3, total=4)
    status, events = next_status(healthy, result)
    assert status["observedGeneration"] == 2
    assert condition(status, HEALTHY)["observedGeneration"] == 2
    assert condition(status, HEALTHY)["lastTransitionTime"] == T0
    assert events == []
    assert status_differs(healthy, status)


def test_foreign_fields_and_conditions_are_kept() -> None:
    old = {"kopf": {"progress": {}}, "conditions": [{"type": "Other", "status": "True"}]}
    status, _ = next_status(old, ok(T0))
    assert status["kopf"] == {"progress": {}}
    assert {"type": "Other", "status": "True"} in status["conditions"]
    assert [c["type"] for c in status["conditions"]][:2] == [HEALTHY, READY]


def test_status_differs_ignores_fields_we_do_not_own() -> None:
    assert not status_differs({"a": 1, "kopf": {"x": 1}}, {"a": 1})
    assert status_differs({"a": 1}, {"a": 2})
    assert status_differs({}, {"a": 1})


def test_effective_interval_is_recorded(healthy: dict[str, Any]) -> None:
    status, _ = next_status(healthy, ok(T1, effective_interval="10s"))
    assert status["effectivePollInterval"] == "10s"
    kept, _ = next_status(status, failed(T2))
    assert kept["effectivePollInterval"] == "10s"


def test_the_shard_is_written_when_it_changes_and_only_then(healthy: dict[str, Any]) -> None:
    sharded, events = next_status(healthy, ok(T1, shard=2))
    assert sharded["shard"] == 2 and status_differs(healthy, sharded) and events == []
    again, _ = next_status(sharded, ok(T2, shard=2))
    assert not status_differs(sharded, again)
    moved, _ = next_status(again, ok(T3, shard=3))  # --shards changed
    assert moved["shard"] == 3
    unsharded, _ = next_status(again, ok(T4))
    assert unsharded["shard"] is None  # a merge patch removes it
    assert "shard" not in next_status(healthy, ok(T4))[0]


def test_overloaded_appears_once_it_is_true_and_stays_as_it_is_without_a_verdict(
    healthy: dict[str, Any],
) -> None:
    on_time, events = next_status(healthy, ok(T1, failure_reason=None, overloaded=False))
    assert not status_differs(healthy, on_time) and events == []  # never late: no condition
    late, events = next_status(on_time, ok(T2, overloaded=True))
    assert condition(late, "Overloaded")["status"] == "True"
    assert [(e.type, e.reason) for e in events] == [("Warning", "Overloaded")]
    assert condition(late, HEALTHY)["status"] == "True"  # not a discovery failure
    for now in (T3, T4):  # still late, or a restarted operator without a verdict yet
        for verdict in (True, None):
            same, events = next_status(late, ok(now, overloaded=verdict))
            assert not status_differs(late, same) and events == []
    back, events = next_status(late, ok(T3, overloaded=False))
    assert condition(back, "Overloaded")["reason"] == "PollsOnTime"
    assert [(e.type, e.reason) for e in events] == [("Normal", "PollsOnTime")]
