"""The small protocol every discovery provider implements, and helpers they share."""

from __future__ import annotations

import json
from typing import Any, Protocol

from yarl import URL

from directservice.httpclient import HttpClient, HttpResponse, parse_retry_after
from directservice.model import Discovery, DiscoveryError


class Provider(Protocol):
    """One discovery API. `discover` returns the accepted instances or raises
    DiscoveryError; it never returns an empty Discovery (last-known-good rule)."""

    kind: str

    async def discover(self, http: HttpClient) -> Discovery: ...


def check_status(resp: HttpResponse, success: frozenset[int] = frozenset({200})) -> None:
    """Map a non-success HTTP status to a distinct condition reason."""
    status = resp.status
    if status in success:
        return
    if 300 <= status < 400:
        target = resp.headers.get("Location", "?")
        raise DiscoveryError(
            "Redirected",
            f"{resp.url} answered {status} to another location; not followed"
            f" (Location host: {_host_of(target)})",
        )
    if status in (401, 403):
        raise DiscoveryError("Unauthorized", f"{resp.url} answered {status}")
    if status == 404:
        raise DiscoveryError("NotFound", f"{resp.url} answered 404: unknown service")
    if status == 429:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise DiscoveryError("Throttled", f"{resp.url} answered 429", retry_after=retry_after)
    if status >= 500:
        raise DiscoveryError("ServerError", f"{resp.url} answered {status}")
    raise DiscoveryError("HTTPStatus", f"{resp.url} answered {status}")


def decode_json(resp: HttpResponse) -> Any:
    try:
        return json.loads(resp.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DiscoveryError(
            "InvalidJSON", f"{resp.url} returned a body that is not JSON ({exc.__class__.__name__})"
        ) from None


def _host_of(url: str) -> str:
    try:
        return URL(url).host or "?"
    except ValueError:
        return "?"
