"""The discovery failure table as emulator set-ups, shared by the provider tests.

Each row makes the emulator (or the network) fail in one way; every provider must turn it
into the row's DiscoveryError reason, and no two rows may share a reason. docs/providers/
README.md documents the same table for users.

A provider test module sets `EMULATOR = TABLE_EMULATOR` for the `emu` fixture of
tests/unit/conftest.py and, per row, hands `check_row` its provider pointed at
`endpoint_for(emu, row)`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery import parse_spec
from directservice.discovery.base import Provider
from directservice.discovery.httpclient import DEFAULT_MAX_BODY_BYTES, HttpClient
from directservice.discovery.registry import provider_for
from directservice.emulator import EmulatorThread

SERVICE = "svc"
ZERO_SERVICE = "zero"  # every instance has weight 0
MISSING_SERVICE = "missing"
INSTANCES = [{"ip": "10.0.0.1", "port": 8080}, {"ip": "10.0.0.2", "port": 8080}]
ZERO_INSTANCES = [{"ip": "10.0.0.1", "port": 8080, "weight": 0}]
READ_TIMEOUT = "300ms"  # the spec's timeouts.read in these tests
SMALL_CAP = 64 * 1024  # the HttpClient body cap in these tests


@dataclass(frozen=True)
class Row:
    reason: str
    fault: dict[str, Any] | None = None  # POST /admin/faults body, without "service"
    service: str = SERVICE
    target: str = "http"  # http: the emulator; closed: a port nobody listens on; tls: https
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. retry_after expected


ROWS = [
    Row("Timeout", {"mode": "delay", "seconds": 1.5}),
    Row("ConnectionFailed", target="closed"),
    Row("TLSError", target="tls"),
    Row("Redirected", {"mode": "redirect", "location": "http://elsewhere.example/", "status": 302}),
    Row("Unauthorized", {"mode": "status", "status": 403}),
    Row("NotFound", service=MISSING_SERVICE),
    Row("Throttled", {"mode": "status", "status": 429, "headers": {"Retry-After": "7"}},
        extra={"retry_after": 7.0}),
    Row("ServerError", {"mode": "status", "status": 503}),
    Row("ResponseTooLarge", {"mode": "oversize", "bytes": SMALL_CAP * 2}),
    Row("InvalidJSON", {"mode": "garbage"}),
    Row("WrongShape", {"mode": "wrong_shape", "json": {"endpoints": "nothing here"}}),
    Row("EmptyList", {"mode": "empty"}),
    Row("AllWeightsZero", service=ZERO_SERVICE),
]  # fmt: skip
ROW_IDS = [row.reason for row in ROWS]


def closed_port_url() -> str:
    """A loopback URL nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def services() -> dict[str, Any]:
    return {SERVICE: INSTANCES, ZERO_SERVICE: ZERO_INSTANCES}


TABLE_IAM = {"users": [{"name": "u", "password": "p", "domain": "d"}]}  # for ModelArts logins
# EmulatorThread arguments for the table: its services, an IAM user, and an HTTPS listener
# with a self-signed certificate (the TLSError row).
TABLE_EMULATOR: dict[str, Any] = {"services": services(), "iam": TABLE_IAM, "tls": True}


def endpoint_for(emu: EmulatorThread, row: Row) -> str:
    """The base URL a provider calls for `row`: the emulator over HTTP, over HTTPS (an
    untrusted certificate), or a loopback port nobody listens on."""
    if row.target == "closed":
        return closed_port_url()
    return emu.https_url if row.target == "tls" else emu.url


def arm(emu: EmulatorThread, row: Row) -> None:
    """Queue the row's fault (if it has one) for the row's service."""
    if row.fault is not None:
        emu.add_fault(service=row.service, **row.fault)


def discover(provider: Provider, cap: int = DEFAULT_MAX_BODY_BYTES) -> Discovery:
    """One discovery call on a fresh HttpClient with body cap `cap`."""

    async def main() -> Discovery:
        http = HttpClient(max_body_bytes=cap)
        try:
            return await provider.discover(http)
        finally:
            await http.close()

    return asyncio.run(main())


def failure(provider: Provider, cap: int = SMALL_CAP) -> DiscoveryError:
    """The DiscoveryError one discovery call raises (the test fails if it succeeds)."""
    with pytest.raises(DiscoveryError) as info:
        discover(provider, cap)
    return info.value


def assert_row(error: DiscoveryError, row: Row) -> None:
    """The error is the row's: its reason, and the attributes the row expects."""
    assert error.reason == row.reason, error
    for name, value in row.extra.items():
        assert getattr(error, name) == value


def check_row(emu: EmulatorThread, row: Row, provider: Mapping[str, Any], **context: Any) -> None:
    """Arm `row`, then check that one discovery through `provider` (the spec's provider
    field; `context` goes to provider_for) fails the row's way."""
    spec = {"provider": dict(provider), "timeouts": {"read": READ_TIMEOUT, "connect": "500ms"}}
    arm(emu, row)
    assert_row(failure(provider_for(parse_spec(spec), **context)), row)
