"""Identical discovery calls share one request: in flight, and for one poll interval after;
calls with other headers never share."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest

from directservice.discovery import parse_spec, provider_for
from directservice.discovery.httpclient import HttpResponse
from directservice.discovery.sharing import CallSharing, call_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Upstream:
    """Stands in for the HTTP client: counts requests, answers after `delay`."""

    def __init__(self, clock: Clock, status: int = 200, delay: float = 0.0) -> None:
        self.sharing = CallSharing(clock=clock)
        self.requests: list[dict[str, str]] = []
        self.status, self.delay = status, delay

    async def request(self, method: str, url: str, **kw: object) -> HttpResponse:
        self.requests.append(dict(kw.get("headers") or {}))  # type: ignore[call-overload]
        await asyncio.sleep(self.delay)
        body = json.dumps({"endpoints": {"items": [{"ip": "10.0.0.1", "port": 80}]}})
        return HttpResponse(self.status, {}, body.encode(), url)


def provider(service: str = "svc") -> object:
    spec = parse_spec(
        {
            "provider": {"paiEas": {"endpoint": "http://eas.test", "serviceName": service}},
            "port": {"name": "http"},
        }
    )
    found = provider_for(spec)
    found.effective_interval(5.0)  # as after a first poll: share for 5 s
    return found


def test_callers_of_one_upstream_share_one_request_per_interval() -> None:
    clock = Clock()
    http = Upstream(clock)
    providers = [provider() for _ in range(10)]

    async def poll_all() -> None:
        for p in providers:
            await p.discover(http)  # type: ignore[attr-defined]

    for round_no in range(1, 4):  # all ten poll once an interval: one request a round
        asyncio.run(poll_all())
        assert len(http.requests) == round_no
        clock.now += 4.9
    assert http.sharing.shared == 3 * 9


def test_concurrent_identical_calls_wait_for_the_one_in_flight() -> None:
    http = Upstream(Clock(), delay=0.05)
    providers = [provider() for _ in range(5)]

    async def together() -> None:
        await asyncio.gather(*(p.discover(http) for p in providers))  # type: ignore[attr-defined]

    asyncio.run(together())
    assert len(http.requests) == 1 and http.sharing.shared == 4


def test_other_upstreams_and_other_headers_are_not_shared() -> None:
    clock = Clock()
    http = Upstream(clock)

    async def both() -> None:
        await provider("a").discover(http)  # type: ignore[attr-defined]
        await provider("b").discover(http)  # type: ignore[attr-defined]

    asyncio.run(both())
    assert len(http.requests) == 2
    url = "http://eas.test/x"
    assert call_key("GET", url, {"X-Auth-Token": "t1"}) != call_key(
        "GET", url, {"X-Auth-Token": "t2"}
    )
    assert call_key("GET", url, {"A": "1", "b": "2"}) == call_key("GET", url, {"B": "2", "a": "1"})


@pytest.mark.parametrize("status", [429, 503])
def test_a_failed_answer_is_not_kept_for_others(status: int) -> None:
    clock = Clock()
    http = Upstream(clock, status=status)

    async def twice() -> None:
        for p in (provider(), provider()):
            with pytest.raises(Exception):  # noqa: B017 (the provider's DiscoveryError)
                await p.discover(http)  # type: ignore[attr-defined]

    asyncio.run(twice())
    assert len(http.requests) == 2


def test_a_caller_never_gets_its_own_answer_back() -> None:
    clock = Clock()
    http = Upstream(clock)
    alone = provider()

    async def poll() -> None:
        await alone.discover(http)  # type: ignore[attr-defined]

    for _ in range(3):
        asyncio.run(poll())
        clock.now += 4.8  # its next poll comes a little before its own interval is over
    assert len(http.requests) == 3, "every poll of its own was sent"


def test_before_its_first_poll_a_provider_shares_nothing() -> None:
    http = Upstream(Clock())
    spec = parse_spec(
        {
            "provider": {"paiEas": {"endpoint": "http://eas.test", "serviceName": "svc"}},
            "port": {"name": "http"},
        }
    )
    fresh = [provider_for(spec) for _ in range(2)]

    async def both() -> None:
        for p in fresh:
            await p.discover(http)  # type: ignore[arg-type]

    asyncio.run(both())
    assert len(http.requests) == 2


def test_a_cancelled_sender_cuts_its_call_and_a_waiter_sends_its_own() -> None:
    async def scenario() -> tuple[bool, bool, int, int]:
        sharing = CallSharing()
        started = asyncio.Event()
        cut: list[bool] = []

        async def slow() -> HttpResponse:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cut.append(True)
                raise
            return HttpResponse(200, {}, b"{}", "u")  # pragma: no cover

        alone = asyncio.ensure_future(sharing.call(("GET", "a", ""), 5, slow, "x"))
        await started.wait()
        alone.cancel()
        await asyncio.gather(alone, return_exceptions=True)
        lone_cut = bool(cut)

        sends: list[str] = []
        sent = asyncio.Event()

        def quick(caller: str) -> Callable[[], Awaitable[HttpResponse]]:
            async def send() -> HttpResponse:
                sends.append(caller)
                sent.set()
                await asyncio.sleep(0.05)
                return HttpResponse(200, {}, b"{}", "u")

            return send

        first = asyncio.ensure_future(sharing.call(("GET", "b", ""), 5, quick("x"), "x"))
        second = asyncio.ensure_future(sharing.call(("GET", "b", ""), 5, quick("y"), "y"))
        await sent.wait()
        first.cancel()
        answer = await second
        assert sends == ["x", "y"], "the waiter sent its own call once the sender's was cut"
        return lone_cut, first.cancelled(), answer.status, sharing.shared

    assert asyncio.run(scenario()) == (True, True, 200, 0)


def test_a_cancelled_waiter_leaves_the_call_to_the_others() -> None:
    async def scenario() -> tuple[int, bool, int, int]:
        sharing = CallSharing()
        sends = 0
        sent = asyncio.Event()

        async def quick() -> HttpResponse:
            nonlocal sends
            sends += 1
            sent.set()
            await asyncio.sleep(0.05)
            return HttpResponse(200, {}, b"{}", "u")

        key = ("GET", "c", "")
        sender = asyncio.ensure_future(sharing.call(key, 5, quick, "x"))
        waiter = asyncio.ensure_future(sharing.call(key, 5, quick, "y"))
        other = asyncio.ensure_future(sharing.call(key, 5, quick, "z"))
        await sent.wait()  # the waiters, started with the sender, wait on its flight now
        assert len(sharing._in_flight) == 1
        waiter.cancel()
        answers = await asyncio.gather(sender, other)
        return sends, waiter.cancelled(), answers[0].status, sharing.shared

    assert asyncio.run(scenario()) == (1, True, 200, 1)
