"""The traffic section of a DirectService spec: health checks and manual exclusions.

Pure; parsed into frozen values the health checker and the endpoint composer read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from directservice.api.values import SpecError, integer, mapping, parse_duration

_HTTP_PATH = re.compile(r"^/[!-~]{0,1023}$")
HEALTH_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
MAX_EXCLUSIONS = 256


class ProbeKind(StrEnum):
    TCP = "tcp"
    HTTP = "http"


@dataclass(frozen=True)
class HealthCheckSpec:
    """spec.healthCheck: active checks of every published instance (off when absent)."""

    kind: ProbeKind = ProbeKind.TCP
    path: str = "/"  # http only
    method: str = "GET"  # http only
    status_min: int = 200  # http only: the expected status range, inclusive
    status_max: int = 399
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3  # consecutive failures that take an instance out
    healthy_threshold: int = 2  # consecutive passes that bring it back
    panic_threshold_percent: int = 50  # more failing than this: publish all (HealthPanic)


@dataclass(frozen=True)
class Exclusion:
    """One spec.exclude entry: an instance address, and its port or None for every port."""

    ip: str
    port: int | None = None

    def matches(self, ip: str, port: int) -> bool:
        return self.ip == ip and self.port in (None, port)


def parse_health_check(raw: Any) -> HealthCheckSpec | None:
    """spec.healthCheck, or None when absent (checks are off by default)."""
    if raw is None:
        return None
    check = mapping(raw, "spec.healthCheck")
    where = "spec.healthCheck"
    kind = check.get("type", "tcp")
    if kind not in tuple(ProbeKind):
        raise SpecError(f"{where}.type must be tcp or http")
    path = check.get("path", "/")
    if not isinstance(path, str) or not _HTTP_PATH.match(path):
        raise SpecError(f"{where}.path must start with / and hold only printable ASCII")
    method = check.get("method", "GET")
    if method not in HEALTH_METHODS:
        raise SpecError(f"{where}.method must be one of {', '.join(HEALTH_METHODS)}")
    status = mapping(check.get("expectedStatus"), f"{where}.expectedStatus", default={})
    low = integer(status.get("min", 200), f"{where}.expectedStatus.min", 100, 599)
    high = integer(status.get("max", 399), f"{where}.expectedStatus.max", 100, 599)
    if low > high:
        raise SpecError(f"{where}.expectedStatus.min must not exceed expectedStatus.max")
    interval = parse_duration(check.get("interval", "5s"), f"{where}.interval")
    timeout = parse_duration(check.get("timeout", "1s"), f"{where}.timeout")
    if not 1.0 <= interval <= 3600.0:
        raise SpecError(f"{where}.interval must be between 1s and 1h")
    if not 0.1 <= timeout <= min(interval, 60.0):
        raise SpecError(f"{where}.timeout must be between 100ms and 60s, and at most the interval")
    return HealthCheckSpec(
        kind=ProbeKind(kind),
        path=path,
        method=method,
        status_min=low,
        status_max=high,
        interval=interval,
        timeout=timeout,
        unhealthy_threshold=integer(
            check.get("unhealthyThreshold", 3), f"{where}.unhealthyThreshold", 1, 100
        ),
        healthy_threshold=integer(
            check.get("healthyThreshold", 2), f"{where}.healthyThreshold", 1, 100
        ),
        panic_threshold_percent=integer(
            check.get("panicThresholdPercent", 50), f"{where}.panicThresholdPercent", 0, 100
        ),
    )


def parse_exclusions(raw: Any) -> tuple[Exclusion, ...]:
    """spec.exclude: "ip", "ip:port" or "[ipv6]:port", canonicalized and de-duplicated."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_EXCLUSIONS:
        raise SpecError(f"spec.exclude must list at most {MAX_EXCLUSIONS} addresses")
    unique = {_parse_exclusion(item) for item in raw}
    return tuple(sorted(unique, key=lambda rule: (rule.ip, rule.port or 0)))


def _parse_exclusion(item: Any) -> Exclusion:
    text = item.strip() if isinstance(item, str) else ""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        # "[ip]" alone, or "[ip]:port"; anything else ("[ip]:", "[ip]x") is refused.
        port_text = (rest[1:] or "none") if rest.startswith(":") else ("none" if rest else "")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port_text = port_text or "none"  # "ip:" names no port: not the same as "ip"
    try:
        address = ipaddress.ip_address(host)
        port = int(port_text) if port_text else None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(port)
    except ValueError:
        raise SpecError(
            f"spec.exclude: {str(item)[:64]!r} is not an address like 10.0.0.7, "
            "10.0.0.7:8080 or [fd00::7]:8080"
        ) from None
    return Exclusion(ip=str(address), port=port)
