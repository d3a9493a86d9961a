"""The one module that reads Secrets: the providers' credentials, by `get`, cached briefly.

RBAC grants `get` only (no list or watch), and many DirectServices share one credential, so
a GET per poll is avoided with a short cache. Values stay bytes until a provider asks for a
key (discovery/credentials.read_keys decodes just that one): a binary CA bundle or keystore
beside the credentials is never decoded. Errors name the Secret, never its content.

The namespace is the caller's: providers pass their DirectService's own (ProviderContext),
and spec parsing refuses a reference that names one. A namespace or name that is not a
DNS name is refused here before any request, so no value can reach another path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Mapping
from urllib.parse import quote

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError
from directservice.publish.apiclient import ApiTransport, WriteError, finish_first

# Matched whole (fullmatch: `$` would let a trailing newline through).
NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a DNS-1123 label
NAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class SecretReader:
    """(namespace, name) → the Secret's data as bytes; a discovery.credentials.SecretReader."""

    def __init__(self, api: ApiTransport, ttl: float = 60.0) -> None:
        self._api = api
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Mapping[str, bytes]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def __call__(self, namespace: str, name: str) -> Mapping[str, bytes]:
        if not (NAMESPACE.fullmatch(namespace) and NAME.fullmatch(name)):
            raise DiscoveryError(
                Reason.SECRET_NOT_FOUND,
                f"Secret {namespace[:63]!r}/{name[:253]!r} cannot exist: not a valid namespace "
                "and name",
            )
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one GET for many pollers of the same Secret
            cached = self._cache.get(key)
            now = asyncio.get_running_loop().time()
            if cached and now - cached[0] < self._ttl:
                return cached[1]
            values = await self._fetch(namespace, name)
            self._cache[key] = (now, values)
            return values

    def invalidate(self, namespace: str, name: str) -> None:
        """Forget a Secret, e.g. after the provider rejected credentials read from it."""
        self._cache.pop((namespace, name), None)

    async def _fetch(self, namespace: str, name: str) -> Mapping[str, bytes]:
        what = f"Secret {namespace}/{name}"
        try:
            path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
            data = await finish_first(lambda: self._api.request(f"read {what}", "GET", path))
        except WriteError as exc:
            if exc.status == 404:
                raise DiscoveryError(Reason.SECRET_NOT_FOUND, f"{what} does not exist") from None
            if exc.status == 403:
                raise DiscoveryError(
                    Reason.SECRET_FORBIDDEN, f"the operator may not read {what}"
                ) from None
            raise DiscoveryError(
                Reason.SECRET_UNAVAILABLE, f"reading {what} failed: {exc.message}"
            ) from None
        return parse_secret_data(data, what)


def parse_secret_data(raw: bytes | None, what: str) -> Mapping[str, bytes]:
    """The base64 `data` of a Secret as bytes per key; nothing is decoded as text here."""
    try:
        data = json.loads(raw or b"{}").get("data") or {}
        return {str(key): base64.b64decode(value, validate=True) for key, value in data.items()}
    except (ValueError, TypeError, AttributeError, binascii.Error):
        raise DiscoveryError(
            Reason.SECRET_UNAVAILABLE, f"{what}: the API server's answer could not be read"
        ) from None
