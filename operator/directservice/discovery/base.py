"""The small protocol every discovery provider implements, and helpers they share."""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from yarl import URL

from directservice.api.reasons import Reason
from directservice.api.spec import Timeouts
from directservice.core.model import (
    Discovery,
    DiscoveryError,
    DroppedEntry,
    InternalError,
    summarize,
)
from directservice.discovery.budget import BudgetKey, Member
from directservice.discovery.credentials import scrub
from directservice.discovery.httpclient import HttpClient, HttpResponse, parse_retry_after
from directservice.discovery.sharing import call_key
from directservice.obs.metrics import BUDGET_WAIT, child

# Vendor error codes look like "APIGW.0301" or "ModelArts.0104"; only text of this shape is
# ever copied from a response body into a message (bodies may echo request headers).
_ERROR_CODE = re.compile(r"^[A-Za-z][A-Za-z0-9]{1,31}\.[0-9]{2,6}$")
# What json.loads raises for a body it cannot decode: JSONDecodeError and UnicodeDecodeError
# (both ValueErrors), a plain ValueError for an integer of over 4300 digits, and
# RecursionError for nesting deeper than the interpreter's stack allows.
UNDECODABLE = (ValueError, RecursionError)


class Provider(Protocol):
    """One discovery API. `discover` returns the accepted instances or raises
    DiscoveryError; it never returns an empty Discovery (last-known-good rule).

    `effective_interval` stretches the poll interval when the provider's call budget is
    shared (budget.py); `close` gives the budget seat back when the DirectService goes away
    or its spec changes.
    """

    kind: str
    # What shards the DirectService across replicas: its budget's key where that is known
    # without a call (the host), the credential reference otherwise; "" for no budget.
    shard_key: str

    async def discover(self, http: HttpClient) -> Discovery: ...

    def effective_interval(self, poll_interval: float) -> float: ...

    def sharing(self) -> tuple[int, float | None]: ...

    def close(self) -> None: ...


class BudgetSeat:
    """A provider's seat in its shared call budget (none: unlimited, nothing to give back)."""

    shard_key = ""
    # How long an identical call's answer may serve this DirectService: its poll interval,
    # learnt after its first poll (0: not yet, nothing shared).
    share_window = 0.0

    def __init__(self, member: Member | None) -> None:
        self.member = member
        # Who calls, for shared calls: a caller never gets its own previous answer back.
        self.caller = member.member_id if member is not None else f"provider-{id(self)}"

    def effective_interval(self, poll_interval: float) -> float:
        self.share_window = poll_interval
        if self.member is None:
            return poll_interval
        return self.member.effective_interval(poll_interval)

    def sharing(self) -> tuple[int, float | None]:
        """How many DirectServices share this budget, and its calls per minute."""
        return (0, None) if self.member is None else self.member.sharing()

    def close(self) -> None:
        if self.member is not None:
            self.member.leave()


Attempt = Callable[[list[str]], Awaitable[Discovery]]


async def discover_scrubbed(attempt: Attempt) -> Discovery:
    """Run one discovery that may send secrets: `attempt` appends each secret it uses to the
    list it is given, and none of them may reach an error message or a dropped-entry label."""
    used: list[str] = []
    try:
        result = await attempt(used)
    except DiscoveryError as exc:
        clean = scrub_error(exc, tuple(used))
        if clean is exc:
            raise
        raise clean from None  # the original, with the secret, must not be chained
    except Exception as exc:  # unforeseen: keep its frames, but no text that may hold a secret
        trace = "".join(traceback.format_tb(exc.__traceback__))
        # Scrub the whole text before cutting it: a cut could split a secret past matching.
        safe = summarize(exc, text=scrub(str(exc), tuple(used)))
        raise InternalError(safe, trace) from None
    return scrub_discovery(result, tuple(used))


async def budgeted_request(
    http: HttpClient,
    member: Member | None,
    budget: BudgetKey,
    method: str,
    url: str,
    *,
    timeouts: Timeouts,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    share_window: float = 0.0,
    caller: str = "",
) -> HttpResponse:
    """One discovery call drawn from the shared budget; a 429 pauses the whole budget.
    With `share_window`, an identical GET (same URL and headers) in flight or answered
    within that many seconds answers instead, and costs no budget (discovery/sharing.py)."""

    async def send() -> HttpResponse:
        if member is not None:
            started = time.monotonic()
            await member.acquire(budget)
            child(BUDGET_WAIT, budget.name).inc(time.monotonic() - started)
        resp = await http.request(
            method,
            url,
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.read,
            headers=headers,
            json_body=json_body,
        )
        if resp.status == 429 and member is not None:
            member.throttled(parse_retry_after(resp.headers.get("Retry-After")))
        return resp

    if share_window <= 0 or method != "GET" or json_body is not None:
        return await send()
    key = call_key(method, url, headers or {})
    return await http.sharing.call(key, share_window, send, caller or f"anonymous-{id(send)}")


def scrub_discovery(result: Discovery, secrets: tuple[str, ...]) -> Discovery:
    """Dropped-entry labels come from the server: make sure none repeats a credential."""
    if not secrets or not result.dropped:
        return result
    dropped = tuple(
        DroppedEntry(entry=scrub(d.entry, secrets), reason=scrub(d.reason, secrets))
        for d in result.dropped
    )
    return Discovery(instances=result.instances, dropped=dropped)


def scrub_error(exc: DiscoveryError, secrets: tuple[str, ...]) -> DiscoveryError:
    """The same error with any credential in its message replaced (normally a no-op)."""
    message = scrub(exc.message, secrets)
    if message == exc.message:
        return exc
    return DiscoveryError(exc.reason, message, retry_after=exc.retry_after)


def error_code(resp: HttpResponse) -> str | None:
    """The vendor error code in a JSON error body ({"error_code": "APIGW.0301", ...}), if any."""
    try:
        body = json.loads(resp.body)
    except UNDECODABLE:
        return None
    if not isinstance(body, Mapping):
        return None
    nested = body.get("error")
    candidates = [body.get("error_code"), body.get("code")]
    if isinstance(nested, Mapping):
        candidates += [nested.get("code"), nested.get("error_code")]
    for value in candidates:
        if isinstance(value, str) and _ERROR_CODE.match(value):
            return value
    return None


def check_status(resp: HttpResponse, success: frozenset[int] = frozenset({200})) -> None:
    """Map a non-success HTTP status to a distinct condition reason."""
    status = resp.status
    if status in success:
        return
    if 300 <= status < 400:
        target = resp.headers.get("Location", "?")
        raise DiscoveryError(
            Reason.REDIRECTED,
            f"{resp.url} answered {status} to another location; not followed"
            f" (Location host: {_host_of(target)})",
        )
    if status in (401, 403):
        code = error_code(resp)
        suffix = f" ({code})" if code else ""
        raise DiscoveryError(Reason.UNAUTHORIZED, f"{resp.url} answered {status}{suffix}")
    if status == 404:
        raise DiscoveryError(Reason.NOT_FOUND, f"{resp.url} answered 404: unknown service")
    if status == 429:
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        raise DiscoveryError(Reason.THROTTLED, f"{resp.url} answered 429", retry_after=retry_after)
    if status >= 500:
        raise DiscoveryError(Reason.SERVER_ERROR, f"{resp.url} answered {status}")
    raise DiscoveryError(Reason.HTTP_STATUS, f"{resp.url} answered {status}")


class AnswerCache:
    """The last answer's bytes and what parsing them gave. In the steady state an answer
    repeats byte for byte, and comparing bytes costs a fraction of decoding, extracting and
    filtering them again (10,000 instances: ~0.1 ms against ~150 ms). Failed parses are not
    kept; a provider rebuilt on a spec change starts empty, so its fields and filters apply."""

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._parsed: Discovery | None = None

    def parse(self, body: bytes, parse: Callable[[], Discovery]) -> Discovery:
        if self._parsed is not None and body == self._body:
            return self._parsed
        parsed = parse()
        self._body, self._parsed = body, parsed
        return parsed


def decode_json(resp: HttpResponse) -> Any:
    try:
        return json.loads(resp.body)
    except UNDECODABLE as exc:
        raise DiscoveryError(
            Reason.INVALID_JSON,
            f"{resp.url} returned a body that is not JSON ({exc.__class__.__name__})",
        ) from None


def _host_of(url: str) -> str:
    try:
        return URL(url).host or "?"
    except ValueError:
        return "?"
