"""Any JSON discovery endpoint: GET a URL, take the list at listPath, read fields by path.

For discovery APIs without a dedicated provider (an internal registry, a Nacos-like
service, a file served over HTTP). Headers may come from Secrets, so tokens stay out of the
DirectService; their values are never put into messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from yarl import URL

from directservice.api.spec import MAX_CALLS_PER_MINUTE, SpecError, mapping
from directservice.core.model import Discovery
from directservice.discovery.base import (
    AnswerCache,
    BudgetSeat,
    budgeted_request,
    check_status,
    decode_json,
    discover_scrubbed,
)
from directservice.discovery.budget import BudgetKey
from directservice.discovery.credentials import header_value, read_keys
from directservice.discovery.extract import locate_list, parse_entries
from directservice.discovery.fields import (
    DOT_PATH,
    FULL_URL,
    FieldPaths,
    SecretKeyRef,
    parse_fields,
    secret_key_ref,
    text,
)
from directservice.discovery.fields import url as checked_url
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import ProviderContext, ProviderKind, register

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the operator sets itself or that would change how the request is framed.
_RESERVED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True)
class HeaderSpec:
    """One request header: a literal value or a Secret key (never both)."""

    name: str
    value: str | None = field(default=None, repr=False)
    secret: SecretKeyRef | None = None


@dataclass(frozen=True)
class HttpJsonSpec:
    kind: ClassVar[str] = "httpJson"
    max_calls_per_minute: ClassVar[int] = MAX_CALLS_PER_MINUTE
    default_calls_per_minute: ClassVar[float | None] = None

    url: str
    headers: tuple[HeaderSpec, ...] = ()
    list_path: str = ""
    fields: FieldPaths = FieldPaths(ip="ip", port="port", weight="weight")
    success_statuses: frozenset[int] = frozenset({200})

    def discovery_urls(self) -> tuple[str, ...]:
        return (self.url,)


def _header(raw: Any, where: str) -> HeaderSpec:
    body = mapping(raw, where)
    name = text(body, "name", where, _HEADER_NAME)
    if name.lower() in _RESERVED_HEADERS:
        raise SpecError(f"{where}.name: {name} is set by the operator")
    value, source = body.get("value"), body.get("valueFrom")
    if (value is None) == (source is None):
        raise SpecError(f"{where} must set exactly one of value and valueFrom")
    if value is not None:
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise SpecError(f"{where}.value must be a single-line string")
        return HeaderSpec(name=name, value=value)
    inner = f"{where}.valueFrom"
    ref = mapping(source, inner).get("secretKeyRef")
    if ref is None:
        raise SpecError(f"{inner}.secretKeyRef is required")
    return HeaderSpec(name=name, secret=secret_key_ref(ref, f"{inner}.secretKeyRef"))


def parse_http_json(body: Mapping[str, Any], where: str) -> HttpJsonSpec:
    url = checked_url(body, "url", where, FULL_URL)
    raw_headers = body.get("headers") or []
    if not isinstance(raw_headers, list):
        raise SpecError(f"{where}.headers must be a list")
    headers = tuple(_header(h, f"{where}.headers[{i}]") for i, h in enumerate(raw_headers))
    list_path = body.get("listPath") or ""
    if list_path and (not isinstance(list_path, str) or not DOT_PATH.match(list_path)):
        raise SpecError(f"{where}.listPath must be a dot path like data.hosts, or empty")
    statuses = body.get("successStatuses") or [200]
    if not isinstance(statuses, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and 200 <= s <= 299 for s in statuses
    ):
        raise SpecError(f"{where}.successStatuses must list HTTP statuses between 200 and 299")
    raw_fields = body.get("fields")
    if isinstance(raw_fields, Mapping) and "list" in raw_fields:
        raise SpecError(f"{where}.fields.list is not a field here; set {where}.listPath")
    fields = parse_fields(raw_fields, f"{where}.fields", HttpJsonSpec.fields)
    if fields.ip is None or fields.port is None:
        raise SpecError(f"{where}.fields.ip and .port cannot be unset")
    return HttpJsonSpec(
        url=url,
        headers=headers,
        list_path=list_path,
        fields=fields,
        success_statuses=frozenset(statuses),
    )


class HttpJsonProvider(BudgetSeat):
    kind = HttpJsonSpec.kind

    def __init__(self, spec: HttpJsonSpec, ctx: ProviderContext) -> None:
        super().__init__(ctx.member)
        self.spec = spec
        self.timeouts = ctx.timeouts
        self.namespace = ctx.namespace
        self.secrets = ctx.secrets
        self.allowed = ctx.allowed
        # Keyed by host: callers of one endpoint share its limits (and its 429 pauses).
        host = URL(spec.url).host_port_subcomponent
        self.budget = BudgetKey(f"httpJson/{host}", ctx.calls_per_minute)
        self.shard_key = self.budget.name
        self.answers = AnswerCache()

    async def headers(self, used: list[str]) -> dict[str, str]:
        """The request headers; every Secret value sent is appended to `used`."""
        out = {"Accept": "application/json"}
        for header in self.spec.headers:
            if header.secret is None:
                out[header.name] = header.value or ""
                continue
            ref = header.secret
            values = await read_keys(self.secrets, self.namespace, ref.name, (ref.key,))
            what = f"key {ref.key} of Secret {self.namespace}/{ref.name} (header {header.name})"
            used.append(values[ref.key].strip())
            out[header.name] = header_value(values[ref.key], what)
        return out

    async def discover(self, http: HttpClient) -> Discovery:
        async def attempt(used: list[str]) -> Discovery:
            resp = await budgeted_request(
                http,
                self.member,
                self.budget,
                "GET",
                self.spec.url,
                timeouts=self.timeouts,
                headers=await self.headers(used),
                share_window=self.share_window,
                caller=self.caller,
            )
            check_status(resp, self.spec.success_statuses)

            def parse() -> Discovery:
                items = locate_list(decode_json(resp), self.spec.list_path)
                return parse_entries(items, self.spec.fields, self.allowed, guess=False)

            return self.answers.parse(resp.body, parse)

        return await discover_scrubbed(attempt)


PROVIDER = register(
    ProviderKind(HttpJsonSpec.kind, parse_http_json, HttpJsonProvider, HttpJsonSpec)
)
