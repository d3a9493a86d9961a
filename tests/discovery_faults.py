"""The discovery failure table as emulator set-ups, shared by the provider tests.

Each row makes the emulator (or the network) fail in one way; every provider must turn it
into the row's DiscoveryError reason, and no two rows may share a reason. docs/providers/
README.md documents the same table for users.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

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


def closed_port_url() -> str:
    """A loopback URL nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def services() -> dict[str, Any]:
    return {SERVICE: INSTANCES, ZERO_SERVICE: ZERO_INSTANCES}
