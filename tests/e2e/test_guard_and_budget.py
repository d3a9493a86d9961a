"""What protects DNS and the discovery APIs, through the operator process:

- per-entry filtering: bad entries of an answer are dropped (and named), the rest published;
- the mass-deletion guard: a big shrink waits for shrinkConfirmations identical answers;
- shared rate budgets: DirectServices on one ModelArts credential never exceed its
  callsPerMinute together (checked on the emulator's own request log), stretch their
  intervals evenly, and a 429 with Retry-After pauses the whole credential.
"""

from __future__ import annotations

import itertools
import re
import secrets
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    HEALTHY,
    PROJECT,
    addresses,
    all_dsvcs,
    condition,
    create,
    directservice,
    emulator_requests,
    events_with,
    eventually,
    health,
    iam_user,
    model_arts,
    pai_eas,
    secret,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e


def _eas_service(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


# -- per-entry filtering ----------------------------------------------------------------

GOOD_ENTRIES = [
    {"ip": "10.50.0.1", "port": 8080},
    {"ip": "10.50.0.2", "port": 8080, "weight": "50"},
]
BAD_ENTRIES = [  # (entry, what the reason says)
    ({"ip": "10.50.0.999", "port": 8080}, "not an IP address"),
    ({"ip": "10.50.0.010", "port": 8080}, "leading zeros"),
    ({"ip": "127.0.0.1", "port": 8080}, "loopback"),
    ({"ip": "169.254.169.254", "port": 80}, "link-local"),
    ({"ip": "224.0.0.251", "port": 5353}, "multicast"),
    ({"ip": "10.99.0.1", "port": 8080}, "outside spec.allowedCIDRs"),
    ({"ip": "10.50.0.20", "port": 0}, "outside 1-65535"),
    ({"ip": "10.50.0.21", "port": 70000}, "outside 1-65535"),
    ({"ip": "10.50.0.22", "port": 8080, "weight": -5}, "negative"),
    ({"ip": "10.50.0.23", "port": 8080, "hostname": "Bad_Host!"}, "DNS-1123"),
]


def test_invalid_entries_are_dropped_and_named(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    eas = _eas_service("mixed")
    mixed = [GOOD_ENTRIES[0], *(entry for entry, _ in BAD_ENTRIES), GOOD_ENTRIES[1]]
    emulator.set_instances(eas, mixed)
    create(
        control_plane,
        directservice(
            namespace, "mixed", pai_eas(emulator.url, eas), allowedCIDRs=["10.50.0.0/16"]
        ),
    )
    wait_published(control_plane, namespace, "mixed", {("10.50.0.1", 8080), ("10.50.0.2", 8080)})
    dsvc = wait_health(control_plane, namespace, "mixed", "True", "DiscoverySucceeded")
    assert dsvc["status"]["droppedEntries"] == len(BAD_ENTRIES)
    assert (dsvc["status"]["readyEndpoints"], dsvc["status"]["totalEndpoints"]) == (2, 2)

    dropped = eventually(
        "EntriesDropped Event",
        lambda: events_with(control_plane, namespace, "mixed", "EntriesDropped", "Warning"),
        10,
    )
    assert len(dropped) == 1
    message = dropped[0]["message"]
    assert message.startswith(f"dropped {len(BAD_ENTRIES)} invalid entries")
    for entry, why in BAD_ENTRIES:
        assert f"{entry['ip']}:{entry['port']}" in message, entry
        assert why in message, why
    assert "10.50.0.1:" not in message and "10.50.0.2:" not in message
    wait_requests(emulator, eas, 2)  # steady state: the same answer posts no second Event
    assert len(events_with(control_plane, namespace, "mixed", "EntriesDropped")) == 1


# -- the mass-deletion guard ------------------------------------------------------------


def _ten(port: int = 8080) -> list[dict[str, Any]]:
    return [{"ip": f"10.70.0.{i}", "port": port} for i in range(1, 11)]


def _ids(instances: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(i["ip"], i["port"]) for i in instances}


def test_big_shrink_is_held_until_confirmed_and_small_shrink_applies_at_once(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    eas = _eas_service("shrink")
    ten = _ten()
    emulator.set_instances(eas, ten)
    create(control_plane, directservice(namespace, "shrink", pai_eas(emulator.url, eas)))
    wait_published(control_plane, namespace, "shrink", _ids(ten))
    wait_health(control_plane, namespace, "shrink", "True", "DiscoverySucceeded")
    before = slices(control_plane, namespace, "shrink")

    # 10 -> 2 removes 80 % (> maxShrinkPercent 50): held until seen in 3 consecutive polls.
    two = ten[:2]
    emulator.set_instances(eas, two)
    messages: set[str] = set()

    def applied() -> bool:
        current = slices(control_plane, namespace, "shrink")
        if addresses(current) == _ids(two):
            return True
        assert current == before, "a held shrink must not touch the slices"
        cond = health(control_plane, namespace, "shrink")
        if cond.get("reason") == "ShrinkHeld":
            assert cond["status"] == "False"
            messages.add(cond["message"])
        return False

    eventually("the confirmed shrink", applied, 20, step=0.1)
    # Held on the first and second identical answers, applied on the third.
    assert messages == {
        "answer would remove 8 of 10 endpoints; confirmed 1/3",
        "answer would remove 8 of 10 endpoints; confirmed 2/3",
    }
    held = events_with(control_plane, namespace, "shrink", "ShrinkHeld")
    assert [e["type"] for e in held] == ["Warning"]
    shrink_applied = eventually(
        "ShrinkApplied Event",
        lambda: events_with(control_plane, namespace, "shrink", "ShrinkApplied", "Normal"),
        10,
    )
    assert len(shrink_applied) == 1
    assert "8 of 10" in shrink_applied[0]["message"]
    wait_health(control_plane, namespace, "shrink", "True", "DiscoverySucceeded")

    # Growing is never held; 10 -> 6 removes 40 % (within 50 %): applied at the next poll.
    emulator.set_instances(eas, ten)
    wait_published(control_plane, namespace, "shrink", _ids(ten), timeout=10)
    six = ten[:6]
    answered_before = emulator_requests(emulator, eas)
    emulator.set_instances(eas, six)
    wait_published(control_plane, namespace, "shrink", _ids(six), timeout=10)
    answered = emulator_requests(emulator, eas) - answered_before
    assert answered <= 2, "applied by the first poll that saw it"
    assert len(events_with(control_plane, namespace, "shrink", "ShrinkHeld")) == 1
    assert len(events_with(control_plane, namespace, "shrink", "ShrinkApplied")) == 1
    assert health(control_plane, namespace, "shrink").get("reason") == "DiscoverySucceeded"


# -- shared rate budget -----------------------------------------------------------------

SERVICES = 5
CALLS_PER_MINUTE = 30
CALLS_AFTER_THROTTLE = 2 * SERVICES  # calls on the credential to wait for after the 429
PAUSE = 6  # Retry-After of the injected 429, seconds
CLOCK_SLACK = 0.25  # request times are taken when each answer is sent
BUDGET_WAIT = re.compile(
    r"^directservice_rate_budget_wait_seconds_total\{[^}]*\} ([0-9.e+-]+)$", re.MULTILINE
)


def _budget_waits(operator: OperatorProcess) -> float:
    """Seconds polls have waited for any rate budget, summed over the budgets."""
    return sum(float(v) for v in BUDGET_WAIT.findall(operator.metrics_text()))


def _credential_calls(emulator: EmulatorThread, user: str) -> int:
    return int(emulator.requests()["per_credential"].get(f"user:{user}", 0))


def test_services_sharing_a_credential_stay_within_its_budget(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    user, password = iam_user(emulator, "budget")
    creds = {"username": user, "password": password, "domainName": "acme"}
    create(control_plane, secret(namespace, "shared-iam", creds))
    service_ids = [f"bud-{i}-{secrets.token_hex(3)}" for i in range(SERVICES)]
    for index, service_id in enumerate(service_ids):
        emulator.set_instances(service_id, [{"ip": f"10.80.0.{index + 1}", "port": 8080}])
    waited_before = _budget_waits(operator)
    for index, service_id in enumerate(service_ids):
        create(
            control_plane,
            directservice(
                namespace,
                f"b{index}",
                model_arts(emulator, service_id, "shared-iam"),
                rateBudget={"callsPerMinute": CALLS_PER_MINUTE},
            ),
        )

    # Five services on 30 calls/min: each polls every 5 x 60 / 30 = 10 s, not every 1 s.
    def all_stretched() -> list[dict[str, Any]] | None:
        items = all_dsvcs(control_plane, namespace)
        ok = len(items) == SERVICES and all(
            (d.get("status") or {}).get("effectivePollInterval") == "10s"
            and _status_and_reason(d) == ("True", "RateLimited")
            for d in items
        )
        return items if ok else None

    stretched = eventually("every service stretched to 10s", all_stretched, 30)
    for dsvc in stretched:
        cond = condition(dsvc, HEALTHY)
        assert "5 DirectServices share a budget of 30 calls/min" in cond["message"]

    # A 429 with Retry-After for one service pauses the credential for all five.
    emulator.add_fault(
        "status", service=service_ids[0], count=1, status=429, headers={"Retry-After": str(PAUSE)}
    )
    throttled_at = eventually(
        "the 429 to be served", lambda: _throttle_time(emulator, service_ids[0]), 20
    )
    wait_health(control_plane, namespace, "b0", "False", "Throttled", timeout=5)
    # Let the five go on past the pause, at their stretched pace, for a count of calls.
    wait_for_count(
        f"{CALLS_AFTER_THROTTLE} more calls on the shared credential",
        lambda: _credential_calls(emulator, user),
        _credential_calls(emulator, user) + CALLS_AFTER_THROTTLE,
        PAUSE + 3 * CALLS_AFTER_THROTTLE * 60 / CALLS_PER_MINUTE,
    )
    wait_health(control_plane, namespace, "b0", "True", timeout=20)
    assert _budget_waits(operator) > waited_before, "budget waits show in the metrics"

    calls = sorted(
        r["time"]
        for r in emulator.requests()["log"]
        if r["credential"] == f"user:{user}"
    )  # fmt: skip
    assert emulator.requests()["per_credential"][f"user:{user}"] == len(calls)
    paused = [t for t in calls if throttled_at + 0.5 < t < throttled_at + PAUSE - CLOCK_SLACK]
    assert paused == [], f"calls during the {PAUSE}s pause: {[t - throttled_at for t in paused]}"
    assert any(t >= throttled_at + PAUSE - CLOCK_SLACK for t in calls), "calls resumed"
    _assert_within_budget(calls, CALLS_PER_MINUTE)
    elapsed = calls[-1] - calls[0]
    assert len(calls) <= CALLS_PER_MINUTE * elapsed / 60 + 1
    # ... yet the budget is used: every service kept polling at its stretched pace.
    per_service = {
        s: sum(1 for r in emulator.requests(s)["log"] if r["status"] == 200) for s in service_ids
    }
    assert all(count >= 2 for count in per_service.values()), per_service


def _status_and_reason(dsvc: dict[str, Any]) -> tuple[str, str] | None:
    cond = condition(dsvc, HEALTHY)
    return (str(cond["status"]), str(cond["reason"])) if cond else None


def _throttle_time(emulator: EmulatorThread, service_id: str) -> float | None:
    times = [r["time"] for r in emulator.requests(service_id)["log"] if r["status"] == 429]
    return times[0] if times else None


def _assert_within_budget(calls: list[float], per_minute: float) -> None:
    """A bucket of capacity 1 refilled at per_minute/60 per second allows at most
    1 + per_minute x T / 60 calls in any window of T seconds: check every window that starts
    and ends on a call (the tightest ones)."""
    for (i, first), (j, last) in itertools.combinations(enumerate(calls), 2):
        allowed = 1 + per_minute * (last - first + CLOCK_SLACK) / 60
        assert j - i + 1 <= allowed, (
            f"{j - i + 1} calls within {last - first:.2f}s exceed the budget of {per_minute:g}/min"
        )


def test_a_stretched_service_still_reports_what_it_published(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    # One service, pollInterval 1s, 30 calls/min: polled every 2s, so its reason is
    # RateLimited; the poll still succeeded and its status must say what it published.
    user, password = iam_user(emulator, "stretch")
    token = emulator.login(user, password, "acme", PROJECT)
    create(control_plane, secret(namespace, "token", {"token": token}))
    service_id = f"stretch-{secrets.token_hex(3)}"
    emulator.set_instances(
        service_id,
        [
            {"ip": "10.81.0.1", "port": 8080},
            {"ip": "10.81.0.2", "port": 8080},
            {"ip": "127.0.0.1", "port": 8080},  # dropped: loopback
        ],
    )
    provider = model_arts(emulator, service_id, "token", token_key="token")
    create(
        control_plane,
        directservice(namespace, "stretched", provider, rateBudget={"callsPerMinute": 30}),
    )
    wait_published(
        control_plane, namespace, "stretched", {("10.81.0.1", 8080), ("10.81.0.2", 8080)}
    )
    dsvc = wait_health(control_plane, namespace, "stretched", "True", "RateLimited")
    status = dsvc["status"]
    assert status["effectivePollInterval"] == "2s"
    assert (status.get("readyEndpoints"), status.get("totalEndpoints")) == (2, 2), status
    assert status.get("droppedEntries") == 1, status
    assert status.get("lastSuccessfulSync"), status
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "EndpointsPublished"), ready
    # Events follow the status patch of the same poll: wait for the watch-visible Event.
    dropped = eventually(
        "the EntriesDropped Event",
        lambda: events_with(control_plane, namespace, "stretched", "EntriesDropped"),
        10,
    )
    assert len(dropped) == 1 and "127.0.0.1:8080" in dropped[0]["message"]
