"""The DirectService spec as typed, validated values.

The CRD schema already validates and defaults; this parser repeats the checks that
matter so a DirectService applied before a schema upgrade (or read from a file by
the CLI) fails with a clear message instead of a KeyError deep in a poll.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from directservice.entries import DEFAULT_ALLOWED_CIDRS, Network
from directservice.provider_specs import (
    AUTH_ACCESS_KEY,
    AUTH_PASSWORD,
    AUTH_TOKEN,
    DEFAULT_EAS_PATH,
    FieldPaths,
    HeaderSpec,
    HttpJsonSpec,
    ModelArtsSpec,
    PaiEasSpec,
    ProviderSpec,
    SecretKeyRef,
    SpecError,
    StaticInstance,
    StaticSpec,
    kind_of,
    parse_provider,
)

__all__ = [
    "AUTH_ACCESS_KEY",
    "AUTH_PASSWORD",
    "AUTH_TOKEN",
    "DEFAULT_EAS_PATH",
    "DirectServiceSpec",
    "FieldPaths",
    "HeaderSpec",
    "HttpJsonSpec",
    "ModelArtsSpec",
    "PaiEasSpec",
    "PortSpec",
    "ProviderSpec",
    "SecretKeyRef",
    "SpecError",
    "StaticInstance",
    "StaticSpec",
    "Timeouts",
    "check_service_name",
    "format_duration",
    "parse_duration",
    "parse_spec",
]

DEFAULT_POLL_INTERVAL = 5.0
MIN_POLL_INTERVAL = 1.0
MAX_ENDPOINTS_PER_SLICE = 1000
DEFAULT_MAX_SHRINK_PERCENT = 50
DEFAULT_SHRINK_CONFIRMATIONS = 3
MAX_SHRINK_CONFIRMATIONS = 100
MAX_CALLS_PER_MINUTE = 60000
# The vendor's per-account ceiling; asking for more only earns 429s.
MAX_MODELARTS_CALLS_PER_MINUTE = 2000
MAX_ALLOWED_CIDRS = 64

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


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
    allowed_cidrs: tuple[Network, ...] = DEFAULT_ALLOWED_CIDRS
    max_shrink_percent: int = DEFAULT_MAX_SHRINK_PERCENT
    shrink_confirmations: int = DEFAULT_SHRINK_CONFIRMATIONS
    calls_per_minute: int | None = None  # spec.rateBudget; None: the operator's default

    @property
    def provider_kind(self) -> str:
        return kind_of(self.provider)


def check_service_name(name: str) -> None:
    """The DirectService name becomes the Service name, so it must be a DNS-1035 label."""
    if len(name) > 63 or not _DNS_1035.match(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS-1035 label (lowercase letters, digits, '-', "
            "starting with a letter, at most 63 characters) because it names the Service"
        )


def parse_spec(spec: Mapping[str, Any]) -> DirectServiceSpec:
    provider = parse_provider(spec.get("provider"))
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
    calls = _parse_rate_budget(spec.get("rateBudget"), kind_of(provider))
    return DirectServiceSpec(
        provider=provider,
        poll_interval=poll,
        port=port,
        timeouts=timeouts,
        max_endpoints_per_slice=per_slice,
        allowed_cidrs=parse_cidrs(spec.get("allowedCIDRs")),
        max_shrink_percent=_bounded_int(
            spec, "maxShrinkPercent", DEFAULT_MAX_SHRINK_PERCENT, 0, 100
        ),
        shrink_confirmations=_bounded_int(
            spec, "shrinkConfirmations", DEFAULT_SHRINK_CONFIRMATIONS, 1, MAX_SHRINK_CONFIRMATIONS
        ),
        calls_per_minute=calls,
    )


def _bounded_int(spec: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"spec.{key} must be an integer between {low} and {high}")
    return value


def parse_cidrs(raw: Any) -> tuple[Network, ...]:
    """spec.allowedCIDRs; host bits must be zero, since "10.1.2.3/8" is usually a typo."""
    if raw is None:
        return DEFAULT_ALLOWED_CIDRS
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ALLOWED_CIDRS:
        raise SpecError(f"spec.allowedCIDRs must list 1..{MAX_ALLOWED_CIDRS} CIDRs")
    networks: list[Network] = []
    for item in raw:
        try:
            if "/" not in str(item):  # a bare address is a /32 to Python but not to CEL
                raise ValueError(item)
            networks.append(ipaddress.ip_network(str(item), strict=True))
        except ValueError:
            raise SpecError(
                f"spec.allowedCIDRs: {str(item)[:50]!r} is not a CIDR like 10.0.0.0/8 "
                "(with the host bits zero)"
            ) from None
    return tuple(networks)


def _parse_rate_budget(raw: Any, kind: str) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("spec.rateBudget must be an object")
    calls = raw.get("callsPerMinute")
    if calls is None:
        return None
    high = MAX_MODELARTS_CALLS_PER_MINUTE if kind == "modelArts" else MAX_CALLS_PER_MINUTE
    if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= high:
        raise SpecError(f"spec.rateBudget.callsPerMinute must be 1..{high} for {kind}")
    return calls


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
