"""Instances listed in the spec itself: for tests, migrations, and pinning a known set.

They pass the same per-entry checks as discovered ones (address ranges, allowedCIDRs,
hostnames), so a typo is reported as a dropped entry rather than written to the API server.
No calls, no budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from directservice.api.spec import MAX_CALLS_PER_MINUTE, SpecError, integer, mapping
from directservice.core.model import Discovery
from directservice.discovery.base import BudgetSeat
from directservice.discovery.extract import parse_entries
from directservice.discovery.fields import FieldPaths, optional_bool
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import ProviderContext, ProviderKind, register

MAX_STATIC_INSTANCES = 1000
STATIC_FIELDS = FieldPaths(
    ip="ip", port="port", weight="weight", ready="ready", hostname="hostname"
)


@dataclass(frozen=True)
class StaticInstance:
    ip: str
    port: int
    weight: float | None = None
    ready: bool = True
    hostname: str | None = None


@dataclass(frozen=True)
class StaticSpec:
    kind: ClassVar[str] = "static"
    max_calls_per_minute: ClassVar[int] = MAX_CALLS_PER_MINUTE
    default_calls_per_minute: ClassVar[float | None] = None

    instances: tuple[StaticInstance, ...]

    def discovery_urls(self) -> tuple[str, ...]:
        return ()


def parse_static(body: Mapping[str, Any], where: str) -> StaticSpec:
    raw = body.get("instances")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_STATIC_INSTANCES:
        raise SpecError(f"{where}.instances must list 1..{MAX_STATIC_INSTANCES} instances")
    return StaticSpec(
        instances=tuple(_instance(item, f"{where}.instances[{i}]") for i, item in enumerate(raw))
    )


def _instance(raw: Any, at: str) -> StaticInstance:
    item = mapping(raw, at)
    if not isinstance(item.get("ip"), str):
        raise SpecError(f"{at}.ip is required")
    weight = item.get("weight")
    if weight is not None and (isinstance(weight, bool) or not isinstance(weight, int | float)):
        raise SpecError(f"{at}.weight must be a number")
    ready = optional_bool(item, "ready", at)
    hostname = item.get("hostname")
    if hostname is not None and not isinstance(hostname, str):
        raise SpecError(f"{at}.hostname must be a string")
    try:
        weight = None if weight is None else float(weight)
    except OverflowError:  # an integer beyond the float range
        raise SpecError(f"{at}.weight is too large") from None
    return StaticInstance(
        ip=item["ip"],
        port=integer(item.get("port"), f"{at}.port", 1, 65535),
        weight=weight,
        ready=True if ready is None else ready,
        hostname=hostname or None,
    )


class StaticProvider(BudgetSeat):
    kind = StaticSpec.kind

    def __init__(self, spec: StaticSpec, ctx: ProviderContext) -> None:
        super().__init__(None)  # static instances use no budget
        self.spec = spec
        self.allowed = ctx.allowed

    def entries(self) -> list[dict[str, Any]]:
        out = []
        for inst in self.spec.instances:
            entry: dict[str, Any] = {"ip": inst.ip, "port": inst.port, "ready": inst.ready}
            if inst.weight is not None:
                entry["weight"] = inst.weight
            if inst.hostname:
                entry["hostname"] = inst.hostname
            out.append(entry)
        return out

    async def discover(self, http: HttpClient) -> Discovery:
        return parse_entries(self.entries(), STATIC_FIELDS, self.allowed, guess=False)


PROVIDER = register(ProviderKind(StaticSpec.kind, parse_static, StaticProvider, StaticSpec))
