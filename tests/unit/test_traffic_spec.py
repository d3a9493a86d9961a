"""spec.healthCheck, spec.exclude, spec.drainSeconds and spec.maxStaleness, parsed and checked."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.api.reasons import Reason
from directservice.api.spec import Exclusion, HealthCheckSpec, ProbeKind, SpecError
from directservice.api.status import PollResult, next_status
from directservice.discovery import parse_spec

PROVIDER = {"static": {"instances": [{"ip": "10.0.0.1", "port": 80}]}}


def spec_with(**fields: Any) -> Any:
    return parse_spec({"provider": PROVIDER, **fields})


def test_the_traffic_fields_default_to_off() -> None:
    spec = spec_with()
    assert (spec.health_check, spec.exclude, spec.max_staleness) == (None, (), None)
    assert spec.drain_seconds == 10


def test_an_empty_health_check_means_tcp_with_the_documented_defaults() -> None:
    assert spec_with(healthCheck={}).health_check == HealthCheckSpec()
    assert HealthCheckSpec().kind is ProbeKind.TCP


def test_an_http_health_check_is_parsed_whole() -> None:
    check = spec_with(
        healthCheck={
            "type": "http",
            "path": "/healthz",
            "method": "HEAD",
            "expectedStatus": {"min": 200, "max": 204},
            "interval": "2s",
            "timeout": "500ms",
            "unhealthyThreshold": 2,
            "healthyThreshold": 1,
            "panicThresholdPercent": 80,
        }
    ).health_check
    assert check == HealthCheckSpec(
        ProbeKind.HTTP, "/healthz", "HEAD", 200, 204, 2.0, 0.5, 2, 1, 80
    )


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"type": "udp"}, "healthCheck.type"),
        ({"path": "healthz"}, "healthCheck.path"),
        ({"path": "/a b"}, "healthCheck.path"),
        ({"method": "DELETE"}, "healthCheck.method"),
        ({"expectedStatus": {"min": 300, "max": 200}}, "expectedStatus.min"),
        ({"expectedStatus": {"min": 99}}, "expectedStatus.min"),
        ({"interval": "500ms"}, "healthCheck.interval"),
        ({"interval": "2s", "timeout": "3s"}, "healthCheck.timeout"),
        ({"unhealthyThreshold": 0}, "unhealthyThreshold"),
        ({"healthyThreshold": True}, "healthyThreshold"),
        ({"panicThresholdPercent": 101}, "panicThresholdPercent"),
        ("tcp", "spec.healthCheck"),
    ],
)
def test_a_bad_health_check_names_its_field(check: Any, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        spec_with(healthCheck=check)


def test_exclusions_are_canonical_sorted_and_unique() -> None:
    spec = spec_with(exclude=["10.0.0.7:8080", "10.0.0.7", "[FD00::7]:80", "fd00:0::7", "10.0.0.7"])
    assert spec.exclude == (
        Exclusion("10.0.0.7", None),
        Exclusion("10.0.0.7", 8080),
        Exclusion("fd00::7", None),
        Exclusion("fd00::7", 80),
    )
    assert Exclusion("10.0.0.7").matches("10.0.0.7", 1)
    assert not Exclusion("10.0.0.7", 80).matches("10.0.0.7", 81)


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.7:0", "10.0.0.7:65536", "host:80", "[fd00::7]x", "[fd00::7]:", "10.0.0.7:", 7, ""],
)
def test_a_bad_exclusion_is_a_spec_error(entry: Any) -> None:
    with pytest.raises(SpecError, match=r"spec\.exclude"):
        spec_with(exclude=[entry])


def test_drain_seconds_and_max_staleness_are_bounded_and_parsed() -> None:
    assert spec_with(drainSeconds=0, maxStaleness="2m").drain_seconds == 0
    assert spec_with(maxStaleness="2m").max_staleness == 120.0
    with pytest.raises(SpecError, match=r"spec\.drainSeconds"):
        spec_with(drainSeconds=3601)
    with pytest.raises(SpecError, match=r"spec\.maxStaleness"):
        spec_with(maxStaleness="soon")


def result(now: str = "2026-12-01T00:00:00Z", **fields: Any) -> PollResult:
    return PollResult(1, "static", now, ready=1, total=1, **fields)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status["conditions"] if c["type"] == kind), None)


def test_health_panic_and_stale_appear_only_when_configured() -> None:
    status, _ = next_status({}, result())
    assert condition(status, "HealthPanic") is None and condition(status, "Stale") is None


def test_a_panic_transition_is_one_status_change_and_one_event() -> None:
    calm, start_events = next_status({}, result(panic=False))
    assert condition(calm, "HealthPanic")["reason"] == Reason.HEALTH_CHECKS_PASSING
    assert all(e.reason != Reason.HEALTH_CHECKS_PASSING for e in start_events)  # no noise

    panic, events = next_status(calm, result(panic=True, now="2026-12-01T00:01:00Z"))
    cond = condition(panic, "HealthPanic")
    assert (cond["status"], cond["reason"]) == ("True", Reason.HEALTH_PANIC)
    assert [(e.type, e.reason) for e in events] == [("Warning", Reason.HEALTH_PANIC)]
    # Still in panic a poll later: nothing the user sees changes, so nothing is written.
    again, events = next_status(panic, result(panic=True, now="2026-12-01T00:02:00Z"))
    assert again == panic and events == []


def test_stale_turns_true_with_its_window_named_then_back() -> None:
    failed = result(
        failure_reason=Reason.TIMEOUT, failure_message="x", stale=True, max_staleness="1m"
    )
    stale, events = next_status({}, failed)
    cond = condition(stale, "Stale")
    assert (cond["status"], cond["reason"]) == ("True", Reason.DISCOVERY_STALE)
    assert "1m" in cond["message"] and Reason.DISCOVERY_STALE in [e.reason for e in events]
    fresh, events = next_status(stale, result(stale=False, max_staleness="1m"))
    assert condition(fresh, "Stale")["reason"] == Reason.DISCOVERY_FRESH
    assert ("Normal", Reason.DISCOVERY_FRESH) in [(e.type, e.reason) for e in events]


def test_excluded_endpoints_are_named_and_cleared_with_a_merge_patch_null() -> None:
    named, _ = next_status({}, result(excluded=("10.0.0.7:80",)))
    assert named["excludedEndpoints"] == ["10.0.0.7:80"]
    cleared, _ = next_status(named, result())
    assert cleared["excludedEndpoints"] is None
    untouched, _ = next_status({}, result())
    assert "excludedEndpoints" not in untouched
