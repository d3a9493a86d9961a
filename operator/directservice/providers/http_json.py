"""Any JSON discovery endpoint: GET a URL, take the list at listPath, read fields by path.

For discovery APIs without a dedicated provider (an internal registry, a Nacos-like
service, a file served over HTTP). Headers may come from Secrets, so tokens stay out of the
DirectService; their values are never put into messages.
"""

from __future__ import annotations

from collections.abc import Sequence

from yarl import URL

from directservice.budget import BudgetKey, Member
from directservice.credentials import SecretReader, header_value, read_keys
from directservice.entries import DEFAULT_ALLOWED_CIDRS, Network
from directservice.httpclient import HttpClient
from directservice.model import Discovery, DiscoveryError
from directservice.provider_specs import HttpJsonSpec
from directservice.providers.base import (
    budgeted_request,
    check_status,
    decode_json,
    scrub_discovery,
    scrub_error,
)
from directservice.providers.extract import locate_list, parse_entries
from directservice.spec import Timeouts


class HttpJsonProvider:
    kind = "httpJson"

    def __init__(
        self,
        spec: HttpJsonSpec,
        timeouts: Timeouts,
        *,
        namespace: str,
        secrets: SecretReader,
        allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS,
        member: Member | None = None,
        calls_per_minute: float | None = None,
    ) -> None:
        self.spec = spec
        self.timeouts = timeouts
        self.namespace = namespace
        self.secrets = secrets
        self.allowed = tuple(allowed)
        self.member = member
        self._used: list[str] = []
        # Keyed by host: callers of one endpoint share its limits (and its 429 pauses).
        self.budget = BudgetKey(
            f"httpJson/{URL(spec.url).host_port_subcomponent}", calls_per_minute
        )

    async def headers(self) -> dict[str, str]:
        out = {"Accept": "application/json"}
        for header in self.spec.headers:
            if header.secret is None:
                out[header.name] = header.value or ""
                continue
            ref = header.secret
            values = await read_keys(self.secrets, self.namespace, ref.name, (ref.key,))
            what = f"key {ref.key} of Secret {self.namespace}/{ref.name} (header {header.name})"
            self._used.append(values[ref.key].strip())
            out[header.name] = header_value(values[ref.key], what)
        return out

    async def discover(self, http: HttpClient) -> Discovery:
        self._used = []  # Secret values this poll sent, kept out of all messages
        try:
            result = await self._discover(http)
        except DiscoveryError as exc:
            clean = scrub_error(exc, tuple(self._used))
            if clean is exc:
                raise
            raise clean from None  # the original, with the secret, must not be chained
        finally:
            used, self._used = tuple(self._used), []  # secrets do not outlive the poll
        return scrub_discovery(result, used)

    async def _discover(self, http: HttpClient) -> Discovery:
        resp = await budgeted_request(
            http,
            self.member,
            self.budget,
            "GET",
            self.spec.url,
            timeouts=self.timeouts,
            headers=await self.headers(),
        )
        check_status(resp, self.spec.success_statuses)
        items = locate_list(decode_json(resp), self.spec.list_path)
        return parse_entries(items, self.spec.fields, self.allowed, guess=False)

    def effective_interval(self, poll_interval: float) -> float:
        return (
            poll_interval if self.member is None else self.member.effective_interval(poll_interval)
        )

    def close(self) -> None:
        if self.member is not None:
            self.member.leave()
