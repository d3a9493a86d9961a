"""Alibaba PAI-EAS VPC direct-connect discovery ("upstreams").

GET {endpoint}{path} → {"correlative": [...], "endpoints": {"items": [{ip, port, weight}]}}
The API needs no credentials; it is reachable only from inside the peered VPC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from yarl import URL

from directservice.budget import BudgetKey, Member
from directservice.entries import DEFAULT_ALLOWED_CIDRS, Network
from directservice.httpclient import HttpClient
from directservice.model import Discovery, DiscoveryError
from directservice.provider_specs import FieldPaths
from directservice.providers.base import budgeted_request, check_status, decode_json
from directservice.providers.extract import parse_entries
from directservice.spec import PaiEasSpec, Timeouts

# Exactly the keys the vendor documents; no guessing for a documented API.
UPSTREAM_FIELDS = FieldPaths(ip="ip", port="port", weight="weight", hostname="hostname")


def discovery_url(spec: PaiEasSpec) -> str:
    path = spec.path.replace("{serviceName}", quote(spec.service_name, safe=""))
    url = spec.endpoint.rstrip("/") + path
    if spec.internal is not None:
        url += ("&" if "?" in url else "?") + f"internal={str(spec.internal).lower()}"
    return url


def parse_upstreams(payload: Any, allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS) -> Discovery:
    """Parse an upstreams answer leniently: a null or missing list is empty, numbers may be
    strings, duplicates merge, and each bad entry is dropped on its own."""
    if not isinstance(payload, Mapping):
        raise DiscoveryError("WrongShape", f"expected a JSON object, got {type(payload).__name__}")
    endpoints = payload.get("endpoints")
    if endpoints is None:
        items: Any = []
    elif isinstance(endpoints, Mapping):
        items = endpoints.get("items") or []
    else:
        raise DiscoveryError("WrongShape", "'endpoints' is not an object")
    if not isinstance(items, list):
        raise DiscoveryError("WrongShape", "'endpoints.items' is not a list")
    return parse_entries(items, UPSTREAM_FIELDS, allowed, guess=False)


class PaiEasProvider:
    kind = "paiEas"

    def __init__(
        self,
        spec: PaiEasSpec,
        timeouts: Timeouts,
        *,
        allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS,
        member: Member | None = None,
        calls_per_minute: float | None = None,
    ) -> None:
        self.spec = spec
        self.timeouts = timeouts
        self.url = discovery_url(spec)
        self.allowed = tuple(allowed)
        self.member = member
        # No credentials: callers of one discovery host share its budget (unlimited unless
        # configured), so a 429 from that host pauses all of them.
        self.budget = BudgetKey(f"paiEas/{URL(self.url).host_port_subcomponent}", calls_per_minute)

    async def discover(self, http: HttpClient) -> Discovery:
        resp = await budgeted_request(
            http,
            self.member,
            self.budget,
            "GET",
            self.url,
            timeouts=self.timeouts,
            headers={"Accept": "application/json"},
        )
        check_status(resp)
        return parse_upstreams(decode_json(resp), self.allowed)

    def effective_interval(self, poll_interval: float) -> float:
        return (
            poll_interval if self.member is None else self.member.effective_interval(poll_interval)
        )

    def close(self) -> None:
        if self.member is not None:
            self.member.leave()
