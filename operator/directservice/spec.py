"""The DirectService spec as typed, validated values.

The CRD schema already validates and defaults; this parser repeats the checks that
matter so a DirectService applied before a schema upgrade (or read from a file by
the CLI) fails with a clear message instead of a KeyError deep in a poll.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_POLL_INTERVAL = 5.0
MIN_POLL_INTERVAL = 1.0
DEFAULT_EAS_PATH = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{serviceName}"
MAX_ENDPOINTS_PER_SLICE = 1000

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class SpecError(ValueError):
    """The DirectService spec cannot be used; the message is shown to the user."""


def parse_duration(text: str, field_name: str) -> float:
    """Parse a Go-style duration ("5s", "1m30s", "250ms") into seconds."""
    value = str(text).strip()
    parts = _DURATION_PART.findall(value)
    if not value or "".join(n + u for n, u in parts) != value:
        raise SpecError(f"{field_name}: {text!r} is not a duration like 5s, 1m or 1m30s")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 5.0 → "5s", 90 → "1m30s"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    minutes, secs = divmod(whole, 60)
    if minutes and secs:
        return f"{minutes}m{secs}s"
    return f"{minutes}m" if minutes else f"{secs}s"


@dataclass(frozen=True)
class PaiEasSpec:
    endpoint: str
    service_name: str
    path: str = DEFAULT_EAS_PATH
    internal: bool | None = None


ProviderSpec = PaiEasSpec


@dataclass(frozen=True)
class PortSpec:
    name: str = "http"
    app_protocol: str | None = None
    number: int | None = None


@dataclass(frozen=True)
class Timeouts:
    connect: float = 2.0
    read: float = 5.0


@dataclass(frozen=True)
class DirectServiceSpec:
    provider: ProviderSpec
    poll_interval: float = DEFAULT_POLL_INTERVAL
    port: PortSpec = PortSpec()
    timeouts: Timeouts = Timeouts()
    max_endpoints_per_slice: int = 100

    @property
    def provider_kind(self) -> str:
        return "paiEas"


def check_service_name(name: str) -> None:
    """The DirectService name becomes the Service name, so it must be a DNS-1035 label."""
    if len(name) > 63 or not _DNS_1035.match(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS-1035 label (lowercase letters, digits, '-', "
            "starting with a letter, at most 63 characters) because it names the Service"
        )


def parse_spec(spec: Mapping[str, Any]) -> DirectServiceSpec:
    provider = _parse_provider(spec.get("provider"))
    poll = parse_duration(spec.get("pollInterval", "5s"), "spec.pollInterval")
    if poll < MIN_POLL_INTERVAL:
        raise SpecError(f"spec.pollInterval must be at least {format_duration(MIN_POLL_INTERVAL)}")
    port = _parse_port(spec.get("port") or {})
    raw_timeouts = spec.get("timeouts") or {}
    timeouts = Timeouts(
        connect=parse_duration(raw_timeouts.get("connect", "2s"), "spec.timeouts.connect"),
        read=parse_duration(raw_timeouts.get("read", "5s"), "spec.timeouts.read"),
    )
    per_slice = spec.get("maxEndpointsPerSlice", 100)
    if not isinstance(per_slice, int) or not 1 <= per_slice <= MAX_ENDPOINTS_PER_SLICE:
        raise SpecError(f"spec.maxEndpointsPerSlice must be 1..{MAX_ENDPOINTS_PER_SLICE}")
    return DirectServiceSpec(
        provider=provider,
        poll_interval=poll,
        port=port,
        timeouts=timeouts,
        max_endpoints_per_slice=per_slice,
    )


def _parse_provider(raw: Any) -> ProviderSpec:
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise SpecError("spec.provider must set exactly one provider (paiEas)")
    kind, body = next(iter(raw.items()))
    if kind != "paiEas":
        raise SpecError(f"spec.provider.{kind} is not a known provider")
    if not isinstance(body, Mapping):
        raise SpecError("spec.provider.paiEas must be an object")
    endpoint = str(body.get("endpoint") or "")
    if not re.match(r"^https?://[^/?#\s]+", endpoint):
        raise SpecError("spec.provider.paiEas.endpoint must be an http(s):// base URL")
    service = str(body.get("serviceName") or "")
    if not service:
        raise SpecError("spec.provider.paiEas.serviceName is required")
    path = str(body.get("path") or DEFAULT_EAS_PATH)
    if not path.startswith("/"):
        raise SpecError("spec.provider.paiEas.path must start with '/'")
    internal = body.get("internal")
    return PaiEasSpec(
        endpoint=endpoint.rstrip("/"),
        service_name=service,
        path=path,
        internal=None if internal is None else bool(internal),
    )


def _parse_port(raw: Mapping[str, Any]) -> PortSpec:
    name = str(raw.get("name", "http"))
    if len(name) > 15 or not _PORT_NAME.match(name) or "--" in name or name.isdigit():
        raise SpecError(f"spec.port.name {name!r} must be an IANA service name like 'http'")
    number = raw.get("port")
    if number is not None and (not isinstance(number, int) or not 1 <= number <= 65535):
        raise SpecError("spec.port.port must be 1..65535")
    app_protocol = raw.get("appProtocol")
    return PortSpec(
        name=name, app_protocol=str(app_protocol) if app_protocol else None, number=number
    )
