"""Calls to the Kubernetes API on the event loop, over aiohttp: the transport of every write.

The official client is synchronous, so each write used to hold a worker thread, and its
models, validation and urllib3 cost about 1.6 ms of CPU per call, under the GIL the polls
need. A start-up of 3,000 DirectServices makes about 15,000 writes. Here a write is one
aiohttp request with a JSON body, and the answer is parsed once.

Where and as whom comes from kopf's login (controller/handlers.py `login`): the writes use
the credentials of kopf's own watches, and a re-login replaces them (`ApiTransport.use`).
Every failure, whatever its kind (an HTTP status, a refused connection, a timeout, TLS),
becomes a WriteError with a condition reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from directservice.api.reasons import Reason

T = TypeVar("T")
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
# A hung API server must not hold a write for ever; the next poll is the retry.
TIMEOUT = aiohttp.ClientTimeout(total=30.0, sock_connect=5.0)
WRITE_CONNECTIONS = 32  # at most this many writes in flight; more wait for a connection
# What no HTTP answer looks like: refused, reset, timed out, TLS, a closed session.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, ssl.SSLError, TimeoutError, RuntimeError)


class WriteError(Exception):
    """A write that did not happen; `reason` goes into the DiscoveryHealthy condition."""

    def __init__(self, reason: Reason, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ApiEndpoint:
    """The API server and the credentials to call it with (a token header, a client
    certificate in the TLS context)."""

    server: str
    headers: Mapping[str, str] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = None  # None: the system's trust, or plain http
    proxy: str | None = None
    # A service account's token file, when the token came from it: the kubelet rotates the
    # token there, and a call refused as 401 reads it again and is sent once more.
    token_file: str | None = None


SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def service_account_token_file(token: str | None, path: str = SERVICE_ACCOUNT_TOKEN) -> str | None:
    """`path` if `token` is the one in it (an in-cluster login), else None. Blocking I/O."""
    if not token:
        return None
    try:
        with open(path, encoding="utf-8") as file:
            return path if file.read().strip() == token else None
    except OSError:
        return None


def _read_token(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().strip() or None
    except OSError:
        return None


def refused(status: int, reason: str, body: bytes | str | None, what: str) -> WriteError:
    """An HTTP error answer, by what the operator should do about it."""
    if status == 409:
        return WriteError(Reason.PUBLISH_CONFLICT, f"{what}: changed meanwhile, will retry", 409)
    if status == 422:
        detail = _detail(body, reason)
        return WriteError(Reason.PUBLISH_INVALID, f"{what}: rejected as invalid: {detail}", 422)
    if status == 403:
        return WriteError(Reason.PUBLISH_FORBIDDEN, f"{what}: forbidden by RBAC", 403)
    if status == 404:
        return WriteError(Reason.PUBLISH_NOT_FOUND, f"{what}: not found", 404)
    if status in (0, 502, 503, 504):  # status 0: no HTTP answer at all
        return WriteError(
            Reason.PUBLISH_UNAVAILABLE, f"{what}: API server unavailable ({status or reason})"
        )
    return WriteError(
        Reason.PUBLISH_API_ERROR, f"{what}: API server answered {status} {reason}", status
    )


def unreachable(exc: BaseException, what: str) -> WriteError:
    """A transport failure: no answer from the API server. The type names what happened."""
    cause = getattr(exc, "reason", None)  # urllib3 wraps the real failure in MaxRetryError
    named = cause if isinstance(cause, BaseException) else exc
    return WriteError(
        Reason.PUBLISH_UNAVAILABLE, f"{what}: API server unreachable ({type(named).__name__})"
    )


def _detail(body: bytes | str | None, reason: str) -> str:
    """The API server's own explanation (a Status object's message), else the reason."""
    try:
        message = json.loads(body or "{}").get("message")
    except (TypeError, ValueError, AttributeError):
        message = None
    return str(message or reason)[:500]


class ApiTransport:
    """One aiohttp session per event loop, opened at the first call and reopened after
    `use` names new credentials."""

    def __init__(self, endpoint: ApiEndpoint | None = None, login_wait: float = 30.0) -> None:
        self._endpoint = endpoint
        self._session: aiohttp.ClientSession | None = None
        self._opened_for: tuple[ApiEndpoint, asyncio.AbstractEventLoop] | None = None
        # kopf logs in after its start-up handlers: a call made before (the election's first
        # step) waits for the login this long, instead of failing.
        self._login_wait = login_wait
        self._logged_in = asyncio.Event()  # bound to a loop at its first wait, not here

    def use(self, endpoint: ApiEndpoint) -> None:
        """Credentials from a (re-)login; the next call opens a session with them."""
        self._endpoint = endpoint
        self._logged_in.set()

    async def request(
        self,
        what: str,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = JSON,
    ) -> bytes:
        """One call; returns the answer's body. Any failure is a WriteError."""
        payload = None if body is None else json.dumps(body, separators=(",", ":"))
        renewed = False
        while True:
            try:
                session, endpoint = await self._session_now()
                async with session.request(
                    method,
                    endpoint.server.rstrip("/") + path,
                    data=payload,
                    params=params,
                    headers={"Content-Type": content_type, "Accept": JSON},
                    proxy=endpoint.proxy,
                    timeout=TIMEOUT,
                ) as resp:
                    data, status, reason = await resp.read(), resp.status, resp.reason or ""
            except TRANSPORT_ERRORS as exc:
                raise unreachable(exc, what) from None
            if status == 401 and not renewed and await self._renew_token(endpoint):
                renewed = True
                continue
            if status >= 400:
                raise refused(status, reason, data, what)
            return data

    async def _renew_token(self, endpoint: ApiEndpoint) -> bool:
        """After a 401: a newer token in the service account's file, if there is one."""
        if endpoint.token_file is None:
            return False
        token = await asyncio.to_thread(_read_token, endpoint.token_file)
        if token is None or endpoint.headers.get("Authorization") == f"Bearer {token}":
            return False
        headers = dict(endpoint.headers, Authorization=f"Bearer {token}")
        self.use(dataclasses.replace(endpoint, headers=headers))
        return True

    async def _session_now(self) -> tuple[aiohttp.ClientSession, ApiEndpoint]:
        if self._endpoint is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._logged_in.wait(), self._login_wait)
        endpoint = self._endpoint
        if endpoint is None:
            raise WriteError(Reason.PUBLISH_UNAVAILABLE, "not logged in to the API server yet")
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._opened_for != (endpoint, loop):
            old, self._session = self._session, None
            if old is not None and self._opened_for is not None and self._opened_for[1] is loop:
                await old.close()
            connector = aiohttp.TCPConnector(
                limit=WRITE_CONNECTIONS,
                ssl=endpoint.ssl_context if endpoint.ssl_context is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers=dict(endpoint.headers)
            )
            self._opened_for = (endpoint, loop)
        return self._session, endpoint

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def finish_first(start: Callable[[], Awaitable[T]]) -> T:
    """Await a call that a cancel must not cut short: a write may land on the API server
    even if its answer is never read, and the caller has to record what it wrote (e.g. a
    created Service that the deletion's cleanup must remove). A cancel waits for the call
    to end (bounded by its timeout) and is delivered at the caller's next await, so no write
    lands after the task has ended. A task with a cancel pending sends nothing more."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
    request = asyncio.ensure_future(start())
    cancelled = False
    while not request.done():
        try:
            await asyncio.wait({request})  # a cancel of this wait leaves the request be
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and task is not None:
        task.uncancel()
        task.cancel()  # again, for the caller's next await
    return request.result()
