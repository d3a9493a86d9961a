"""One shared non-blocking HTTP client for every discovery call.

Calls run on the event loop (1,000 services x one poll per 5 s is 200 requests/s) over
kept-alive connections (connections.py, http11.py). Every transport failure becomes a
DiscoveryError with a stable reason; messages carry no query strings or headers, which is
where credentials live.

A client made with an AddressPolicy connects only where the policy allows (addresses.py).
The operator's discovery calls always go through such a client (`restricted`, in the
pipeline); a bare HttpClient checks no address, for the offline CLI run by a person on their
own machine.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
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
from directservice.discovery.connections import Origin, Pool
from directservice.discovery.http11 import Answer, BodyTooLarge, ProtocolError, request_bytes
from directservice.discovery.sharing import CallSharing

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_USER_AGENT = "directservice-operator"


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


@dataclass(frozen=True)
class _Target:
    """What a URL says about where to connect and what to ask (parsed once per URL)."""

    scheme: str
    host: str  # as connected to and checked: an IP literal or an ASCII name
    port: int
    authority: str  # the Host header
    path: str  # path and query, as sent
    safe_url: str


_TARGETS: dict[str, _Target] = {}
_MAX_TARGETS = 10_000


def _target(url: str) -> _Target:
    target = _TARGETS.get(url)
    if target is not None:
        return target
    try:
        parsed = URL(url)
        host, scheme, port = parsed.raw_host, parsed.scheme, parsed.port
    except (TypeError, ValueError):
        raise DiscoveryError(Reason.CONNECTION_FAILED, "the discovery URL is malformed") from None
    if scheme not in ("http", "https") or not host or port is None:
        raise DiscoveryError(
            Reason.CONNECTION_FAILED, f"{redact_url(url)} is not an http or https URL"
        )
    authority = f"[{host}]" if ":" in host else host
    if parsed.explicit_port is not None and not parsed.is_default_port():
        authority = f"{authority}:{parsed.port}"
    target = _Target(scheme, host, port, authority, parsed.raw_path_qs, redact_url(url))
    if len(_TARGETS) >= _MAX_TARGETS:
        _TARGETS.clear()
    _TARGETS[url] = target
    return target


@functools.cache
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class HttpClient:
    """Kept-alive connections with a body size cap and no redirects.

    addresses: where connections may go; None checks nothing (see the module docstring).
    resolver: the DNS resolver under the address check (default: aiohttp's, getaddrinfo in
    a thread).
    dns_cache_seconds: how long an answer (checked before it is cached) is reused; 0: never.
    user_agent: sent with every request; names the replica with election.
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
        self.user_agent = user_agent or DEFAULT_USER_AGENT
        self.sharing = CallSharing()  # one for a client and its restricted forms
        self.addresses = addresses
        self._limit = limit
        self._resolver = resolver
        self._dns_cache_seconds = dns_cache_seconds
        self._pool: Pool | None = None
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

    def _ensure_pool(self) -> Pool:
        if self._pool is None:
            self._base_resolver = resolver = self._resolver or aiohttp.DefaultResolver()
            if self.addresses is not None:
                resolver = CheckingResolver(self.addresses, resolver)
            self._pool = Pool(resolver, self._limit, self._dns_cache_seconds)
        return self._pool

    async def close(self) -> None:
        for client in self._restricted.values():
            await client.close()
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._base_resolver is not None and self._base_resolver is not self._resolver:
            await self._base_resolver.close()
        self._base_resolver = None

    def _check_literal(self, host: str) -> None:
        """An IP literal never reaches the resolver: check it here."""
        if self.addresses is not None:
            self.addresses.check_literal(host)

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
        """Send one request; raise DiscoveryError for anything that is not an HTTP answer.

        connect_timeout bounds resolving, connecting and the TLS handshake; from the moment
        the request is written, read_timeout bounds each wait for a byte and twice it the
        whole answer (a body trickled byte by byte ends too)."""
        target = _target(url)
        safe_url = target.safe_url
        tls = None
        if target.scheme == "https":
            tls = ssl_context if ssl_context is not None else _default_tls()
        origin = Origin(target.scheme, target.host, target.port, tls)
        sent = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        sent.setdefault("User-Agent", self.user_agent)
        try:
            self._check_literal(target.host)
            wire = request_bytes(method, target.path, target.authority, sent, body)
            answer = await self._exchange(origin, wire, connect_timeout, read_timeout)
        except DiscoveryError:
            raise
        except AddressRefused as exc:
            raise DiscoveryError(Reason.ADDRESS_NOT_ALLOWED, str(exc)) from None
        except TimeoutError as exc:
            raise DiscoveryError(Reason.TIMEOUT, f"no answer from {safe_url} in time") from exc
        except BodyTooLarge as exc:
            cap = self.max_body_bytes
            said = f"announced {exc.size} bytes, over the" if exc.declared else "sent over"
            raise DiscoveryError(
                Reason.RESPONSE_TOO_LARGE,
                f"{safe_url} {said} {cap} bytes" + (" cap" if exc.declared else ""),
            ) from None
        except ssl.SSLError as exc:
            raise DiscoveryError(Reason.TLS_ERROR, f"TLS handshake with {safe_url} failed") from exc
        except _ConnectFailed as exc:
            raise DiscoveryError(
                Reason.CONNECTION_FAILED,
                f"cannot connect to {safe_url}: {exc.error.strerror or type(exc.error).__name__}",
            ) from exc.error
        except ProtocolError as exc:  # its messages are fixed texts: nothing of the URL
            raise DiscoveryError(
                Reason.CONNECTION_FAILED, f"{safe_url} sent no readable HTTP answer: {exc}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise DiscoveryError(
                Reason.CONNECTION_FAILED, f"{type(exc).__name__} talking to {safe_url}"
            ) from exc
        return HttpResponse(
            status=answer.status,
            headers=CIMultiDict(answer.headers),  # header names are case-insensitive
            body=answer.body,
            url=safe_url,
        )

    async def _exchange(
        self, origin: Origin, wire: bytes, connect_timeout: float, read_timeout: float
    ) -> Answer:
        """One exchange on a kept connection, or a new one. A kept connection the peer had
        closed before it read our request is retried once on a new connection."""
        pool = self._ensure_pool()
        loop = asyncio.get_running_loop()
        for attempt in (0, 1):
            try:
                conn, reused = await pool.acquire(origin, connect_timeout)
            except (AddressRefused, TimeoutError, ssl.SSLError):
                raise
            except OSError as exc:
                raise _ConnectFailed(exc) from exc
            deadline = loop.time() + 2 * read_timeout
            try:
                answer = await conn.exchange(
                    wire, self.max_body_bytes, read_timeout=read_timeout, deadline=deadline
                )
            except (ProtocolError, OSError) as exc:
                stale = reused and conn.answered_nothing and not isinstance(exc, TimeoutError)
                pool.release(origin, conn, reuse=False)
                if attempt == 0 and stale:
                    continue
                raise
            except BaseException:
                pool.release(origin, conn, reuse=False)
                raise
            pool.release(origin, conn, reuse=answer.keep_alive)
            return answer
        raise AssertionError("unreachable")


class _ConnectFailed(Exception):
    """No connection could be opened (after the address check passed)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error
