"""The failure table of docs/providers/README.md, row by row, through the operator process.

Each row: publish good endpoints, make discovery fail in the row's way, and check that
DiscoveryHealthy turns False with the row's own reason, that the EndpointSlices and the
Service stay byte-for-byte as they were over several failing polls, that exactly one Warning
Event with that reason was posted, and that the next good answer restores health without
rewriting anything. The discovery source is a PAI-EAS emulator of this module's own (it also
serves HTTPS with an untrusted certificate, for the TLS row), so a 429's pause of its host
cannot slow other modules' tests.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from discovery_faults import closed_port_url
from support import (
    HEALTHY,
    condition,
    create,
    directservice,
    discovery_count,
    events_with,
    get_dsvc,
    pai_eas,
    patch,
    service,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

GOOD = [{"ip": "10.60.0.1", "port": 8080}, {"ip": "10.60.0.2", "port": 8080}]
ZERO = [dict(entry, weight=0) for entry in GOOD]
RETRY_AFTER = 2  # seconds, the 429 row's Retry-After
OVER_CAP = 5 * 1024 * 1024  # the operator's body cap is 4 MiB
FAILING_POLLS = 3  # polls that must fail (and post no second Event) before recovery


@dataclass
class Case:
    """One DirectService polling one emulated service, and how to break and heal it."""

    cp: ControlPlane
    emulator: EmulatorThread
    namespace: str
    name: str = "ft"
    service: str = field(default_factory=lambda: f"ft-{secrets.token_hex(4)}")

    def fault(self, mode: str, **params: Any) -> None:
        self.emulator.add_fault(mode, service=self.service, **params)

    def endpoint(self, url: str) -> None:
        # A spec change: the operator polls the new endpoint at once.
        body = {"spec": {"provider": pai_eas(url, self.service)}}
        patch(self.cp, "dsvc", self.namespace, self.name, body)


@dataclass(frozen=True)
class Row:
    reason: str
    cause: Callable[[Case], None]
    recover: Callable[[Case], None] = lambda case: case.emulator.clear_faults()
    message: str | None = None  # a fragment the condition message must contain


def _restore(case: Case) -> None:
    case.emulator.set_instances(case.service, GOOD)


def _back_to_http(case: Case) -> None:
    case.endpoint(case.emulator.url)


ROWS = {
    "timeout": Row("Timeout", lambda c: c.fault("delay", seconds=1.5)),
    "connection-refused": Row(
        "ConnectionFailed", lambda c: c.endpoint(closed_port_url()), _back_to_http
    ),
    "tls-error": Row("TLSError", lambda c: c.endpoint(c.emulator.https_url), _back_to_http),
    "redirect-elsewhere": Row(
        "Redirected",
        lambda c: c.fault("redirect", location="http://elsewhere.example/upstreams", status=302),
        message="elsewhere.example",
    ),
    "http-401": Row("Unauthorized", lambda c: c.fault("status", status=401), message="401"),
    "http-403": Row("Unauthorized", lambda c: c.fault("status", status=403), message="403"),
    "http-404": Row(
        "NotFound", lambda c: c.emulator.delete_service(c.service), _restore, message="404"
    ),
    "http-429": Row(
        "Throttled",
        lambda c: c.fault("status", status=429, headers={"Retry-After": str(RETRY_AFTER)}),
        message="429",
    ),
    "http-503": Row("ServerError", lambda c: c.fault("status", status=503), message="503"),
    "body-over-cap": Row("ResponseTooLarge", lambda c: c.fault("oversize", bytes=OVER_CAP)),
    "invalid-json": Row("InvalidJSON", lambda c: c.fault("garbage")),
    "wrong-shape": Row(
        "WrongShape", lambda c: c.fault("wrong_shape", json={"endpoints": "nothing here"})
    ),
    "empty-list": Row("EmptyList", lambda c: c.fault("empty")),
    "all-weights-zero": Row(
        "AllWeightsZero", lambda c: c.emulator.set_instances(c.service, ZERO), _restore
    ),
}


def test_each_row_of_the_table_has_its_own_reason() -> None:
    # 401 and 403 are one row of the table (Unauthorized); every other row is distinct.
    reasons = [row.reason for key, row in ROWS.items() if key != "http-403"]
    assert len(reasons) == len(set(reasons)) == 13


@pytest.fixture(scope="module")
def table_emulator() -> Iterator[EmulatorThread]:
    """This module's own emulator, also on HTTPS (self-signed, so the operator refuses it)."""
    with EmulatorThread(tls=True) as emu:
        yield emu


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_failure_keeps_published_endpoints(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    table_emulator: EmulatorThread,
    namespace: str,
    row: Row,
) -> None:
    emulator = table_emulator
    emulator.clear_faults()
    case = Case(control_plane, emulator, namespace)
    emulator.set_instances(case.service, GOOD)
    create(control_plane, directservice(namespace, case.name, pai_eas(emulator.url, case.service)))
    want = {("10.60.0.1", 8080), ("10.60.0.2", 8080)}
    wait_published(control_plane, namespace, case.name, want)
    wait_health(control_plane, namespace, case.name, "True", "DiscoverySucceeded")
    before = slices(control_plane, namespace, case.name)
    service_before = service(control_plane, namespace, case.name)
    failures_before = discovery_count(operator, "paiEas", row.reason)

    row.cause(case)
    dsvc = wait_health(control_plane, namespace, case.name, "False", timeout=15)
    cond = condition(dsvc, HEALTHY)
    assert cond["reason"] == row.reason, cond
    if row.message:
        assert row.message in cond["message"]

    # Several more failing polls: nothing published changes, and no second Event.
    wait_for_count(
        f"{FAILING_POLLS} failing polls",
        lambda: discovery_count(operator, "paiEas", row.reason),
        failures_before + FAILING_POLLS,
        30,
    )
    assert slices(control_plane, namespace, case.name) == before
    assert service(control_plane, namespace, case.name) == service_before
    warnings = events_with(control_plane, namespace, case.name, row.reason)
    assert [e["type"] for e in warnings] == ["Warning"], warnings
    dsvc = get_dsvc(control_plane, namespace, case.name)
    assert dsvc["status"]["readyEndpoints"] == 2  # the last good answer still stands

    if row.reason == "Throttled":
        _assert_retry_after_respected(emulator, case.service)

    row.recover(case)
    wait_health(control_plane, namespace, case.name, "True", "DiscoverySucceeded", timeout=30)
    assert slices(control_plane, namespace, case.name) == before  # the same answer: no writes
    assert len(events_with(control_plane, namespace, case.name, row.reason)) == 1


def _assert_retry_after_respected(emulator: EmulatorThread, eas_service: str) -> None:
    """After a 429 with Retry-After, the next call comes no sooner than it allows."""
    log = emulator.requests(eas_service)["log"]
    throttled = [r["time"] for r in log if r["status"] == 429]
    assert len(throttled) >= 2
    after_first = [r["time"] for r in log if r["time"] > throttled[0]]
    gaps = [b - a for a, b in zip([throttled[0], *after_first], after_first, strict=False)]
    assert min(gaps) >= RETRY_AFTER - 0.1, gaps
