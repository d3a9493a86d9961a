"""Alibaba PAI-EAS VPC direct-connect discovery ("upstreams"): spec, parser and provider.

GET {endpoint}{path} → {"correlative": [...], "endpoints": {"items": [{ip, port, weight}]}}
The API needs no credentials; it is reachable only from inside the peered VPC.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from yarl import URL

from directservice.api.reasons import Reason
from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, MAX_CALLS_PER_MINUTE, Network, SpecError
from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery.base import (
    AnswerCache,
    BudgetSeat,
    budgeted_request,
    check_status,
    decode_json,
)
from directservice.discovery.budget import BudgetKey
from directservice.discovery.extract import parse_entries
from directservice.discovery.fields import FieldPaths, optional_bool, url
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import ProviderContext, ProviderKind, register

_BASE = re.compile(r"^https?://[^/?#\s]+")
DEFAULT_EAS_PATH = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{serviceName}"
# Exactly the keys the vendor documents; no guessing for a documented API.
UPSTREAM_FIELDS = FieldPaths(ip="ip", port="port", weight="weight", hostname="hostname")


@dataclass(frozen=True)
class PaiEasSpec:
    kind: ClassVar[str] = "paiEas"
    max_calls_per_minute: ClassVar[int] = MAX_CALLS_PER_MINUTE
    default_calls_per_minute: ClassVar[float | None] = None

    endpoint: str
    service_name: str
    path: str = DEFAULT_EAS_PATH
    internal: bool | None = None

    def discovery_urls(self) -> tuple[str, ...]:
        return (self.endpoint,)


def parse_pai_eas(body: Mapping[str, Any], where: str) -> PaiEasSpec:
    if not isinstance(body.get("endpoint"), str) or not _BASE.match(body["endpoint"]):
        raise SpecError(f"{where}.endpoint must be an http(s):// base URL")
    endpoint = url(body, "endpoint", where, _BASE)
    service = body.get("serviceName")
    if not isinstance(service, str) or not service:
        raise SpecError(f"{where}.serviceName is required")
    path = body.get("path") or DEFAULT_EAS_PATH
    if not isinstance(path, str) or not path.startswith("/"):
        raise SpecError(f"{where}.path must start with '/'")
    return PaiEasSpec(
        endpoint=endpoint.rstrip("/"),
        service_name=service,
        path=path,
        internal=optional_bool(body, "internal", where),
    )


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
        raise DiscoveryError(
            Reason.WRONG_SHAPE, f"expected a JSON object, got {type(payload).__name__}"
        )
    endpoints = payload.get("endpoints")
    if endpoints is None:
        items: Any = []
    elif isinstance(endpoints, Mapping):
        items = endpoints.get("items") or []
    else:
        raise DiscoveryError(Reason.WRONG_SHAPE, "'endpoints' is not an object")
    if not isinstance(items, list):
        raise DiscoveryError(Reason.WRONG_SHAPE, "'endpoints.items' is not a list")
    return parse_entries(items, UPSTREAM_FIELDS, allowed, guess=False)


class PaiEasProvider(BudgetSeat):
    kind = PaiEasSpec.kind

    def __init__(self, spec: PaiEasSpec, ctx: ProviderContext) -> None:
        super().__init__(ctx.member)
        self.spec = spec
        self.timeouts = ctx.timeouts
        self.url = discovery_url(spec)
        self.allowed = ctx.allowed
        # No credentials: callers of one discovery host share its budget (unlimited unless
        # configured), so a 429 from that host pauses all of them.
        host = URL(self.url).host_port_subcomponent
        self.budget = BudgetKey(f"paiEas/{host}", ctx.calls_per_minute)
        self.shard_key = self.budget.name
        self.answers = AnswerCache()

    async def discover(self, http: HttpClient) -> Discovery:
        resp = await budgeted_request(
            http,
            self.member,
            self.budget,
            "GET",
            self.url,
            timeouts=self.timeouts,
            headers={"Accept": "application/json"},
            share_window=self.share_window,
            caller=self.caller,
        )
        check_status(resp)
        return self.answers.parse(
            resp.body, lambda: parse_upstreams(decode_json(resp), self.allowed)
        )


PROVIDER = register(ProviderKind(PaiEasSpec.kind, parse_pai_eas, PaiEasProvider, PaiEasSpec))
