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
import time
from typing import Any

import pytest

from clusterhelpers import eventually
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from dsvcsupport import (
    HEALTHY,
    addresses,
    all_dsvcs,
    create,
    directservice,
    events_with,
    get_dsvc,
    pai_eas,
    secret,
    slices,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

PROJECT = "0123456789abcdef0123456789abcdef"


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
    time.sleep(2)  # steady state: the same answer posts no second Event
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
        cond = next(
            (c for c in get_dsvc(control_plane, namespace, "shrink")["status"]["conditions"]
             if c["type"] == HEALTHY),
            {},
        )  # fmt: skip
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
    emulator.set_instances(eas, six)
    changed_at = time.time()
    wait_published(control_plane, namespace, "shrink", _ids(six), timeout=10)
    answered = [r for r in emulator.requests(eas)["log"] if r["time"] > changed_at]
    assert len(answered) <= 2, "applied by the first poll that saw it"
    assert len(events_with(control_plane, namespace, "shrink", "ShrinkHeld")) == 1
    assert len(events_with(control_plane, namespace, "shrink", "ShrinkApplied")) == 1
    assert health_reason(control_plane, namespace, "shrink") == "DiscoverySucceeded"


def health_reason(cp: ControlPlane, namespace: str, name: str) -> str | None:
    for cond in get_dsvc(cp, namespace, name)["status"]["conditions"]:
        if cond["type"] == HEALTHY:
            return str(cond["reason"])
    return None


# -- shared rate budget -----------------------------------------------------------------

SERVICES = 5
CALLS_PER_MINUTE = 30
RUN_SECONDS = 40.0
PAUSE = 6  # Retry-After of the injected 429, seconds
CLOCK_SLACK = 0.25  # request times are taken when each answer is sent


def test_services_sharing_a_credential_stay_within_its_budget(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    user, password = f"budget-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    emulator.put_iam_user(user, password, "acme")
    creds = {"username": user, "password": password, "domainName": "acme"}
    create(control_plane, secret(namespace, "shared-iam", creds))
    service_ids = [f"bud-{i}-{secrets.token_hex(3)}" for i in range(SERVICES)]
    for index, service_id in enumerate(service_ids):
        emulator.set_instances(service_id, [{"ip": f"10.80.0.{index + 1}", "port": 8080}])
    started = time.time()
    for index, service_id in enumerate(service_ids):
        provider = {
            "modelArts": {
                "endpoint": emulator.url,
                "iamEndpoint": emulator.iam_url,
                "projectId": PROJECT,
                "serviceId": service_id,
                "credentialsSecretRef": {"name": "shared-iam"},
            }
        }
        create(
            control_plane,
            directservice(
                namespace,
                f"b{index}",
                provider,
                rateBudget={"callsPerMinute": CALLS_PER_MINUTE},
            ),
        )

    # Five services on 30 calls/min: each polls every 5 x 60 / 30 = 10 s, not every 1 s.
    def all_stretched() -> list[dict[str, Any]] | None:
        items = all_dsvcs(control_plane, namespace)
        ok = len(items) == SERVICES and all(
            (d.get("status") or {}).get("effectivePollInterval") == "10s"
            and health_reason_of(d) == ("True", "RateLimited")
            for d in items
        )
        return items if ok else None

    stretched = eventually("every service stretched to 10s", all_stretched, 30)
    for dsvc in stretched:
        cond = next(c for c in dsvc["status"]["conditions"] if c["type"] == HEALTHY)
        assert "5 DirectServices share a budget of 30 calls/min" in cond["message"]

    # A 429 with Retry-After for one service pauses the credential for all five.
    emulator.add_fault(
        "status", service=service_ids[0], count=1, status=429, headers={"Retry-After": str(PAUSE)}
    )
    throttled_at = eventually(
        "the 429 to be served", lambda: _throttle_time(emulator, service_ids[0]), 20
    )
    wait_health(control_plane, namespace, "b0", "False", "Throttled", timeout=5)
    time.sleep(max(0.0, started + RUN_SECONDS - time.time()))
    wait_health(control_plane, namespace, "b0", "True", timeout=20)
    waited = re.findall(
        r"^directservice_rate_budget_wait_seconds_total\{[^}]*\} ([0-9.e+-]+)$",
        operator.metrics_text(),
        re.MULTILINE,
    )
    assert waited and sum(float(v) for v in waited) > 0, "budget waits show in the metrics"

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


def health_reason_of(dsvc: dict[str, Any]) -> tuple[str, str] | None:
    for cond in (dsvc.get("status") or {}).get("conditions") or []:
        if cond["type"] == HEALTHY:
            return str(cond["status"]), str(cond["reason"])
    return None


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
    user, password = f"stretch-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    emulator.put_iam_user(user, password, "acme")
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
    provider = {
        "modelArts": {
            "endpoint": emulator.url,
            "projectId": PROJECT,
            "serviceId": service_id,
            "credentialsSecretRef": {"name": "token", "tokenKey": "token"},
        }
    }
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
    dropped = events_with(control_plane, namespace, "stretched", "EntriesDropped")
    assert len(dropped) == 1 and "127.0.0.1:8080" in dropped[0]["message"]
