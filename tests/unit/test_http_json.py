"""The httpJson provider over loopback HTTP, and the whole failure table through it.

The emulator's PAI-EAS route serves {"endpoints": {"items": [...]}}, which httpJson reads
with listPath endpoints.items: any JSON API works, so the EAS faults cover this provider too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from directservice.core.model import Instance
from directservice.discovery import parse_spec
from directservice.discovery.budget import RateBudgets
from directservice.discovery.credentials import secret_not_found
from directservice.discovery.registry import Provider, provider_for
from directservice.emulator import EmulatorThread
from discovery_faults import (
    MISSING_SERVICE,
    READ_TIMEOUT,
    ROW_IDS,
    ROWS,
    SERVICE,
    TABLE_EMULATOR,
    Row,
    check_row,
    discover,
    endpoint_for,
    failure,
    services,
)

pytestmark = pytest.mark.unit

EMULATOR = TABLE_EMULATOR


async def reader(namespace: str, name: str) -> Mapping[str, str]:
    if (namespace, name) == ("ns", "registry"):
        return {"token": "Bearer s3cr3t-t0ken\n"}
    raise secret_not_found(namespace, name)


def provider(url: str, **body: Any) -> Provider:
    spec = {
        "provider": {"httpJson": {"url": url, "listPath": "endpoints.items", **body}},
        "timeouts": {"read": READ_TIMEOUT, "connect": "500ms"},
    }
    return provider_for(parse_spec(spec), namespace="ns", secrets=reader)


def test_discovers_and_sends_headers_from_secrets(emu: EmulatorThread) -> None:
    headers = [
        {
            "name": "Authorization",
            "valueFrom": {"secretKeyRef": {"name": "registry", "key": "token"}},
        },
        {"name": "X-Request-Id", "value": "literal-1"},
    ]
    result = discover(provider(emu.upstreams_url(SERVICE), headers=headers))
    assert result.instances == (Instance("10.0.0.1", 8080), Instance("10.0.0.2", 8080))
    sent = emu.requests()["log"][0]["headers"]
    assert sent["Authorization"] == "Bearer s3cr3t-t0ken"  # trimmed
    assert sent["X-Request-Id"] == "literal-1"


def test_a_missing_header_secret(emu: EmulatorThread) -> None:
    headers = [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]
    error = failure(provider(emu.upstreams_url(SERVICE), headers=headers))
    assert (error.reason, "ns/nope" in error.message) == ("SecretNotFound", True)
    assert emu.requests()["total"] == 0


def test_fields_and_readiness_by_path(emu: EmulatorThread) -> None:
    emu.set_instances(
        "custom",
        [
            {"addr": {"v4": "10.1.0.1"}, "p": "9000", "up": "healthy", "w": 3, "name": "a-1"},
            {"addr": {"v4": "10.1.0.2"}, "p": 9000, "up": "down", "w": "7", "name": "a-2"},
            {"addr": {"v4": "8.8.8.8"}, "p": 9000},  # outside allowedCIDRs: dropped
        ],
        fill_defaults=False,
    )
    fields = {"ip": "addr.v4", "port": "p", "ready": "up", "weight": "w", "hostname": "name"}
    result = discover(provider(emu.upstreams_url("custom"), fields=fields))
    assert result.instances == (
        Instance("10.1.0.1", 9000, weight=3, hostname="a-1"),
        Instance("10.1.0.2", 9000, weight=7, ready=False, hostname="a-2"),
    )
    assert [d.entry for d in result.dropped] == ["8.8.8.8:9000"]
    assert "allowedCIDRs" in result.dropped[0].reason


def test_a_top_level_list(emu: EmulatorThread) -> None:
    emu.add_fault("wrong_shape", service=SERVICE, json=[{"ip": "10.0.0.9", "port": 1}])
    result = discover(provider(emu.upstreams_url(SERVICE), listPath=""))
    assert result.instances == (Instance("10.0.0.9", 1),)


def test_other_success_statuses(emu: EmulatorThread) -> None:
    body = '{"endpoints": {"items": [{"ip": "10.0.0.5", "port": 80}]}}'
    emu.add_fault("status", service=SERVICE, status=203, body=body)
    assert failure(provider(emu.upstreams_url(SERVICE))).reason == "HTTPStatus"
    emu.add_fault("status", service=SERVICE, status=203, body=body)
    p = provider(emu.upstreams_url(SERVICE), successStatuses=[200, 203])
    assert discover(p).instances == (Instance("10.0.0.5", 80),)


def test_a_429_pauses_everyone_on_the_host(emu: EmulatorThread) -> None:
    budgets = RateBudgets()
    spec = parse_spec(
        {
            "provider": {
                "httpJson": {"url": emu.upstreams_url(SERVICE), "listPath": "endpoints.items"}
            }
        }
    )
    first = provider_for(spec, namespace="ns", budgets=budgets, member_id="ns/a")
    second = provider_for(spec, namespace="ns", budgets=budgets, member_id="ns/b")
    emu.add_fault("status", service=SERVICE, status=429, headers={"Retry-After": "120"}, count=1)
    assert failure(first).reason == "Throttled"
    error = failure(second)  # never reached the emulator: the host's budget is paused
    assert error.reason == "RateLimited"
    assert emu.requests()["total"] == 1


# --- the failure table ------------------------------------------------------------------


def url_for(emu: EmulatorThread, row: Row) -> str:
    """The row's service's PAI-EAS upstreams path, on the row's target."""
    path = emu.upstreams_url(row.service).removeprefix(emu.url)
    return endpoint_for(emu, row) + path


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_failure_table(emu: EmulatorThread, row: Row) -> None:
    body = {"url": url_for(emu, row), "listPath": "endpoints.items"}
    check_row(emu, row, {"httpJson": body}, namespace="ns", secrets=reader)


def test_failure_reasons_are_distinct() -> None:
    reasons = [row.reason for row in ROWS]
    assert len(set(reasons)) == len(reasons) == 13
    assert MISSING_SERVICE not in services()


def test_the_tls_listener_works_for_a_client_that_trusts_it(emu: EmulatorThread) -> None:
    import requests

    assert emu.tls is not None
    answer = requests.get(emu.https_url + "/healthz", verify=str(emu.tls.cert), timeout=5)
    assert answer.json() == {"status": "ok"}
