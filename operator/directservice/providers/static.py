"""Instances listed in the spec itself: for tests, migrations, and pinning a known set.

They pass the same per-entry checks as discovered ones (address ranges, allowedCIDRs,
hostnames), so a typo is reported as a dropped entry rather than written to the API server.
No calls, no budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from directservice.entries import DEFAULT_ALLOWED_CIDRS, Network
from directservice.httpclient import HttpClient
from directservice.model import Discovery
from directservice.provider_specs import FieldPaths, StaticSpec
from directservice.providers.extract import parse_entries

STATIC_FIELDS = FieldPaths(
    ip="ip", port="port", weight="weight", ready="ready", hostname="hostname"
)


class StaticProvider:
    kind = "static"

    def __init__(
        self, spec: StaticSpec, *, allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS
    ) -> None:
        self.spec = spec
        self.allowed = tuple(allowed)

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

    def effective_interval(self, poll_interval: float) -> float:
        return poll_interval

    def close(self) -> None:
        """Nothing to give back: static instances use no budget."""
