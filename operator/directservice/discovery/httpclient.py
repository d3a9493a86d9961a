"""One shared non-blocking HTTP client for every discovery call.

aiohttp keeps the event loop free (1,000 services x one poll per 5 s is 200
requests/s) and reuses connections. Every transport failure becomes a
DiscoveryError with a stable reason; messages carry no query strings or headers,
which is where credentials live.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError

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
    """A lazily created aiohttp session with a body size cap and no redirects."""

    def __init__(self, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, limit: int = 256) -> None:
        self.max_body_bytes = max_body_bytes
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=60)
            # trust_env=False: proxies from the environment must not see discovery calls.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        except TimeoutError as exc:
            raise DiscoveryError(Reason.TIMEOUT, f"no answer from {safe_url} in time") from exc
        except aiohttp.ClientSSLError as exc:
            raise DiscoveryError(Reason.TLS_ERROR, f"TLS handshake with {safe_url} failed") from exc
        except aiohttp.ClientConnectorError as exc:
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
