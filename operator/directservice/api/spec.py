"""The DirectService spec as typed, validated values.

The CRD schema already validates and defaults; this parser repeats the checks that matter,
so an object stored under an older CRD (any field of any type) or read from a file by the CLI
fails with SpecError naming the field, never with an AttributeError deep in a poll.
The provider section is parsed by the provider's own module (discovery/registry.py), handed
in as `parse_provider`, so this layer knows no provider.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from directservice.api.traffic import (
    Exclusion,
    HealthCheckSpec,
    ProbeKind,
    parse_exclusions,
    parse_health_check,
)
from directservice.api.values import (
    SpecError,
    format_duration,
    integer,
    mapping,
    parse_duration,
)

# What callers import from here, including the values and traffic sections it re-exports.
__all__ = [
    "DirectServiceSpec",
    "Exclusion",
    "HealthCheckSpec",
    "Network",
    "ProbeKind",
    "SpecError",
    "format_duration",
    "integer",
    "mapping",
    "parse_duration",
    "parse_spec",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_POLL_INTERVAL = 5.0
MIN_POLL_INTERVAL = 1.0
MAX_POLL_INTERVAL = 3600.0
MAX_ENDPOINTS_PER_SLICE = 1000
DEFAULT_MAX_SHRINK_PERCENT = 50
DEFAULT_SHRINK_CONFIRMATIONS = 3
MAX_SHRINK_CONFIRMATIONS = 100
MAX_CALLS_PER_MINUTE = 60000
MAX_ALLOWED_CIDRS = 64
DEFAULT_DRAIN_SECONDS = 10
MAX_DRAIN_SECONDS = 3600

# Private IPv4 (RFC 1918) and unique-local IPv6 (RFC 4193): where instances in a peered VPC
# live. A discovery answer pointing elsewhere (a public address, a cloud metadata endpoint)
# is more likely an attack or a bug than a model instance. Carrier-grade NAT space
# (100.64.0.0/10) is left out: on Alibaba Cloud it holds the platform's own services (the
# metadata service at 100.100.100.200, DNS, NTP) and no VPC may use it.
DEFAULT_ALLOWED_CIDRS: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)

_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class ProviderSpec(Protocol):
    """One provider's parsed section of spec.provider (a frozen dataclass per provider)."""

    kind: ClassVar[str]
    # The most calls per minute spec.rateBudget may ask of this provider, and the budget
    # that applies when neither the spec nor the operator sets one (None: unlimited).
    max_calls_per_minute: ClassVar[int]
    default_calls_per_minute: ClassVar[float | None]

    def discovery_urls(self) -> tuple[str, ...]:
        """Every URL a poll may contact: the operator checks their hosts before any call."""
        ...


ProviderParser = Callable[[Any], ProviderSpec]


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
    health_check: HealthCheckSpec | None = None  # None: no active checks
    drain_seconds: int = DEFAULT_DRAIN_SECONDS
    exclude: tuple[Exclusion, ...] = ()
    max_staleness: float | None = None  # None: never Stale

    @property
    def provider_kind(self) -> str:
        return self.provider.kind


def check_service_name(name: str) -> None:
    """The DirectService name becomes the Service name, so it must be a DNS-1035 label."""
    if len(name) > 63 or not _DNS_1035.match(name):
        raise SpecError(
            f"metadata.name {name!r} must be a DNS-1035 label (lowercase letters, digits, '-', "
            "starting with a letter, at most 63 characters) because it names the Service"
        )


def parse_spec(raw: Any, parse_provider: ProviderParser) -> DirectServiceSpec:
    spec = mapping(raw, "spec")
    provider = parse_provider(spec.get("provider"))
    poll = parse_duration(spec.get("pollInterval", "5s"), "spec.pollInterval")
    # The CRD's bounds again: an object stored under an older CRD may hold anything, and a
    # 0s timeout would mean "no timeout" to the HTTP client.
    if not MIN_POLL_INTERVAL <= poll <= MAX_POLL_INTERVAL:
        raise SpecError("spec.pollInterval must be between 1s and 1h")
    raw_timeouts = mapping(spec.get("timeouts"), "spec.timeouts", default={})
    timeouts = Timeouts(
        connect=parse_duration(raw_timeouts.get("connect", "2s"), "spec.timeouts.connect"),
        read=parse_duration(raw_timeouts.get("read", "5s"), "spec.timeouts.read"),
    )
    if not 0.1 <= timeouts.connect <= 60.0:
        raise SpecError("spec.timeouts.connect must be between 100ms and 60s")
    if not 0.1 <= timeouts.read <= 300.0:
        raise SpecError("spec.timeouts.read must be between 100ms and 5m")
    return DirectServiceSpec(
        provider=provider,
        poll_interval=poll,
        port=_parse_port(mapping(spec.get("port"), "spec.port", default={})),
        timeouts=timeouts,
        max_endpoints_per_slice=integer(
            spec.get("maxEndpointsPerSlice", 100),
            "spec.maxEndpointsPerSlice",
            1,
            MAX_ENDPOINTS_PER_SLICE,
        ),
        allowed_cidrs=parse_cidrs(spec.get("allowedCIDRs")),
        max_shrink_percent=integer(
            spec.get("maxShrinkPercent", DEFAULT_MAX_SHRINK_PERCENT),
            "spec.maxShrinkPercent",
            0,
            100,
        ),
        shrink_confirmations=integer(
            spec.get("shrinkConfirmations", DEFAULT_SHRINK_CONFIRMATIONS),
            "spec.shrinkConfirmations",
            1,
            MAX_SHRINK_CONFIRMATIONS,
        ),
        calls_per_minute=_parse_rate_budget(spec.get("rateBudget"), provider),
        health_check=parse_health_check(spec.get("healthCheck")),
        drain_seconds=integer(
            spec.get("drainSeconds", DEFAULT_DRAIN_SECONDS),
            "spec.drainSeconds",
            0,
            MAX_DRAIN_SECONDS,
        ),
        exclude=parse_exclusions(spec.get("exclude")),
        max_staleness=(
            None
            if spec.get("maxStaleness") is None
            else parse_duration(spec.get("maxStaleness"), "spec.maxStaleness")
        ),
    )


def parse_cidrs(raw: Any) -> tuple[Network, ...]:
    """spec.allowedCIDRs; host bits must be zero, since "10.1.2.3/8" is usually a typo."""
    if raw is None:
        return DEFAULT_ALLOWED_CIDRS
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_ALLOWED_CIDRS:
        raise SpecError(f"spec.allowedCIDRs must list 1..{MAX_ALLOWED_CIDRS} CIDRs")
    networks: list[Network] = []
    for item in raw:
        try:
            if not isinstance(item, str) or "/" not in item:  # a bare address is no CIDR in CEL
                raise ValueError(item)
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise SpecError(
                f"spec.allowedCIDRs: {str(item)[:50]!r} is not a CIDR like 10.0.0.0/8 "
                "(with the host bits zero)"
            ) from None
    return tuple(networks)


def _parse_rate_budget(raw: Any, provider: ProviderSpec) -> int | None:
    if raw is None:
        return None
    calls = mapping(raw, "spec.rateBudget").get("callsPerMinute")
    if calls is None:
        return None
    high = min(provider.max_calls_per_minute, MAX_CALLS_PER_MINUTE)
    return integer(calls, f"spec.rateBudget.callsPerMinute (for {provider.kind})", 1, high)


def _parse_port(raw: Mapping[str, Any]) -> PortSpec:
    name = raw.get("name", "http")
    if (
        not isinstance(name, str)
        or len(name) > 15
        or not _PORT_NAME.match(name)
        or "--" in name
        or name.isdigit()
    ):
        raise SpecError(
            f"spec.port.name {str(name)[:40]!r} must be an IANA service name like 'http'"
        )
    number = raw.get("port")
    if number is not None:
        number = integer(number, "spec.port.port", 1, 65535)
    app_protocol = raw.get("appProtocol")
    if app_protocol is not None and not isinstance(app_protocol, str):
        raise SpecError("spec.port.appProtocol must be a string")
    return PortSpec(name=name, app_protocol=app_protocol or None, number=number)
