"""One shared non-blocking HTTP client for every discovery call.

aiohttp keeps the event loop free (1,000 services x one poll per 5 s is 200
requests/s) and reuses connections. Every transport failure becomes a
DiscoveryError with a stable reason; messages carry no query strings or headers,
which is where credentials live.

A client made with an AddressPolicy connects only where the policy allows (addresses.py).
The operator's discovery calls always go through such a client (`restricted`, in the
pipeline); a bare HttpClient checks no address, for the offline CLI run by a person on their
own machine.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict
from yarl import URL

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError
from directservice.discovery.addresses import AddressPolicy, AddressRefused, CheckingResolver
from directservice.discovery.sharing import CallSharing

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str


def redact_url(url: str) -> str:
    """The URL without query, fragment or userinfo: safe for logs, Events and status."""
    parsed = URL(url)
    return str(parsed.with_query(None).with_fragment(None).with_user(None))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HttpClient:
    """A lazily created aiohttp session with a body size cap and no redirects.

    addresses: where connections may go; None checks nothing (see the module docstring).
    resolver: the DNS resolver under the address check (default: aiohttp's).
    dns_cache_seconds: how long an answer (checked before it is cached) is reused; 0: never.
    user_agent: sent with every request (None: aiohttp's); names the replica with election.
    """

    def __init__(
        self,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        limit: int = 256,
        *,
        addresses: AddressPolicy | None = None,
        resolver: AbstractResolver | None = None,
        dns_cache_seconds: int = 60,
        user_agent: str | None = None,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.user_agent = user_agent
        self.sharing = CallSharing()  # one for a client and its restricted forms
        self.addresses = addresses
        self._limit = limit
        self._resolver = resolver
        self._dns_cache_seconds = dns_cache_seconds
        self._session: aiohttp.ClientSession | None = None
        self._base_resolver: AbstractResolver | None = None
        self._restricted: dict[AddressPolicy, HttpClient] = {}

    def restricted(self, policy: AddressPolicy) -> HttpClient:
        """A client like this one that connects only where `policy` allows. One per policy,
        kept (its connections are reused) and closed with this one."""
        client = self._restricted.get(policy)
        if client is None:
            client = HttpClient(
                self.max_body_bytes,
                self._limit,
                addresses=policy,
                resolver=self._resolver,
                dns_cache_seconds=self._dns_cache_seconds,
                user_agent=self.user_agent,
            )
            client.sharing = self.sharing
            self._restricted[policy] = client
        return client

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # The connector never closes a resolver it was given: close() does, unless the
            # caller passed it in.
            self._base_resolver = resolver = self._resolver or aiohttp.DefaultResolver()
            if self.addresses is not None:
                resolver = CheckingResolver(self.addresses, resolver)
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                resolver=resolver,
                use_dns_cache=self._dns_cache_seconds > 0,
                ttl_dns_cache=self._dns_cache_seconds or None,
            )
            # trust_env=False: proxies from the environment must not see discovery calls.
            headers = {"User-Agent": self.user_agent} if self.user_agent else None
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, headers=headers
            )
        return self._session

    async def close(self) -> None:
        for client in self._restricted.values():
            await client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._base_resolver is not None and self._base_resolver is not self._resolver:
            await self._base_resolver.close()
        self._base_resolver = None

    def _check_literal(self, url: str) -> None:
        """An IP literal never reaches the resolver: check it here, legacy IPv4 spellings
        ("2130706433", "127.1", "0x7f.1") as the address the C library reads them as."""
        host = URL(url).host
        if self.addresses is None or host is None:
            return
        try:
            self.addresses.check(host, str(ipaddress.ip_address(host)))
            return
        except ValueError:
            pass
        try:
            legacy = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return  # a name: the resolver checks where it leads
        self.addresses.check(host, str(legacy))

    async def request(
        self,
        method: str,
        url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpResponse:
        """Send one request; raise DiscoveryError for anything that is not an HTTP answer."""
        session = self._ensure_session()
        timeout = aiohttp.ClientTimeout(
            total=connect_timeout + read_timeout * 2,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        safe_url = redact_url(url)
        try:
            self._check_literal(url)
            async with session.request(
                method,
                url,
                headers=dict(headers or {}),
                json=json_body,
                timeout=timeout,
                allow_redirects=False,
                ssl=ssl_context if ssl_context is not None else True,
            ) as resp:
                body = await self._read_capped(resp, safe_url)
                return HttpResponse(
                    status=resp.status,
                    headers=CIMultiDict(resp.headers),  # header names are case-insensitive
                    body=body,
                    url=safe_url,
                )
        except DiscoveryError:
            raise
        except AddressRefused as exc:
            raise DiscoveryError(Reason.ADDRESS_NOT_ALLOWED, str(exc)) from None
        except TimeoutError as exc:
            raise DiscoveryError(Reason.TIMEOUT, f"no answer from {safe_url} in time") from exc
        except aiohttp.ClientSSLError as exc:
            raise DiscoveryError(Reason.TLS_ERROR, f"TLS handshake with {safe_url} failed") from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):  # the resolver refused the answer
                raise DiscoveryError(Reason.ADDRESS_NOT_ALLOWED, str(exc.os_error)) from None
            raise DiscoveryError(
                Reason.CONNECTION_FAILED, f"cannot connect to {safe_url}: {exc.os_error.strerror}"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DiscoveryError(
                Reason.CONNECTION_FAILED, f"{type(exc).__name__} talking to {safe_url}"
            ) from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse, safe_url: str) -> bytes:
        declared = resp.content_length
        if declared is not None and declared > self.max_body_bytes:
            raise DiscoveryError(
                Reason.RESPONSE_TOO_LARGE,
                f"{safe_url} announced {declared} bytes, over the {self.max_body_bytes} cap",
            )
        chunks: list[bytes] = []
        size = 0
        while chunk := await resp.content.read(65536):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise DiscoveryError(
                    Reason.RESPONSE_TOO_LARGE, f"{safe_url} sent over {self.max_body_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)
