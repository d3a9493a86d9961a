"""Kept-alive discovery connections against a real server on loopback: reuse, the close, a
peer that dropped a kept connection, the connection limit, and deadlines counted from send."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from directservice.core.model import DiscoveryError
from directservice.discovery import connections
from directservice.discovery.httpclient import HttpClient, HttpResponse

pytestmark = pytest.mark.unit

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
# (connection number, request number on it) -> what to answer; None: hang up unanswered.
Behaviour = Callable[[int, int], Awaitable[bytes | None]]


class Server:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.connections = 0
        self.requests = 0


@asynccontextmanager
async def keep_alive_server(behaviour: Behaviour) -> AsyncIterator[tuple[str, Server]]:
    server = Server(behaviour)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = server.connections
        server.connections += 1
        try:
            for n in range(1000):
                await reader.readuntil(b"\r\n\r\n")
                server.requests += 1
                answer = await server.behaviour(number, n)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if answer is OK_CLOSE:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/", server
    finally:
        listening.close()


async def get(client: HttpClient, url: str, read_timeout: float = 2.0) -> HttpResponse:
    return await client.request("GET", url, connect_timeout=1.0, read_timeout=read_timeout)


async def answer_ok(_: int, __: int) -> bytes | None:
    return OK


def calls(behaviour: Behaviour, count: int) -> tuple[list[int], int, int]:
    """`count` calls in turn on one client: their statuses, the connections the server
    accepted and the requests it read."""

    async def run() -> tuple[list[int], int, int]:
        client = HttpClient()
        async with keep_alive_server(behaviour) as (url, server):
            statuses = [(await get(client, url)).status for _ in range(count)]
            await client.close()
        return statuses, server.connections, server.requests

    return asyncio.run(run())


def test_calls_share_one_kept_connection() -> None:
    assert calls(answer_ok, 5) == ([200] * 5, 1, 5)


def test_an_answer_that_closes_is_not_reused() -> None:
    async def close_each(_: int, __: int) -> bytes | None:
        return OK_CLOSE

    assert calls(close_each, 3) == ([200] * 3, 3, 3)


def test_a_kept_connection_the_peer_dropped_is_retried_once_on_a_new_one() -> None:
    """The peer reads the second request on the kept connection and hangs up unanswered
    (its idle timeout raced ours): the call is sent again on a new connection."""

    async def drop_second(conn: int, request: int) -> bytes | None:
        return None if (conn, request) == (0, 1) else OK

    assert calls(drop_second, 3) == ([200] * 3, 2, 4)


def test_a_new_connection_hung_up_on_is_not_retried() -> None:
    async def hang_up(_: int, __: int) -> bytes | None:
        return None

    async def run() -> tuple[DiscoveryError, int]:
        client = HttpClient()
        async with keep_alive_server(hang_up) as (url, server):
            with pytest.raises(DiscoveryError) as caught:
                await get(client, url)
            await client.close()
        return caught.value, server.requests

    error, requests = asyncio.run(run())
    assert (error.reason, requests) == ("ConnectionFailed", 1)


def test_idle_connections_of_one_origin_give_way_to_another_at_the_limit() -> None:
    async def run() -> tuple[int, int]:
        client = HttpClient(limit=1)
        async with (
            keep_alive_server(answer_ok) as (first, a),
            keep_alive_server(answer_ok) as (second, b),
        ):
            await get(client, first)  # now idle, holding the only place
            await asyncio.wait_for(get(client, second), 5)
            await asyncio.wait_for(get(client, first), 5)
            await client.close()
        return a.connections, b.connections

    assert asyncio.run(run()) == (2, 1)


def test_a_call_queued_for_a_connection_is_timed_from_its_send() -> None:
    """One connection allowed, and three calls at once against a server that takes 0.5 s
    per answer: the third is answered 1.5 s after it was made, later than connect plus twice
    the read timeout (1.3 s), and still succeeds, since its deadline starts at its send."""

    async def slow(_: int, __: int) -> bytes | None:
        await asyncio.sleep(0.5)
        return OK

    async def run() -> tuple[list[int], float]:
        client = HttpClient(limit=1)
        async with keep_alive_server(slow) as (url, _):
            started = time.monotonic()
            calls = [
                client.request("GET", url, connect_timeout=0.1, read_timeout=0.6) for _ in range(3)
            ]
            statuses = [r.status for r in await asyncio.gather(*calls)]
            took = time.monotonic() - started
            await client.close()
        return statuses, took

    statuses, took = asyncio.run(run())
    assert statuses == [200, 200, 200]
    assert took >= 1.5  # they did queue: one connection, one answer at a time


def test_a_trickled_body_ends_at_twice_the_read_timeout_from_send() -> None:
    """One byte per 0.1 s never trips the 0.3 s wait for a byte; the whole-answer deadline
    (2 x 0.3 s from the send) ends the call."""
    sent: list[int] = []

    async def run() -> tuple[DiscoveryError, float]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            try:
                for _ in range(100):
                    writer.write(b"x")
                    await writer.drain()
                    sent.append(1)
                    await asyncio.sleep(0.1)
            except ConnectionError:
                pass
            writer.close()

        listening = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listening.sockets[0].getsockname()[1]
        client = HttpClient()
        started = time.monotonic()
        try:
            with pytest.raises(DiscoveryError) as caught:
                await get(client, f"http://127.0.0.1:{port}/", read_timeout=0.3)
            return caught.value, time.monotonic() - started
        finally:
            await client.close()
            listening.close()

    error, took = asyncio.run(run())
    assert error.reason == "Timeout"
    assert 0.6 <= took < 1.5
    assert len(sent) >= 4  # bytes kept coming: only the deadline could end it


def test_a_malformed_url_and_an_unreadable_answer_are_clear_connection_failures() -> None:
    async def garbage(_: int, __: int) -> bytes | None:
        return b"SSH-2.0-OpenSSH_9.6\r\n\r\n"

    async def run() -> tuple[DiscoveryError, DiscoveryError]:
        client = HttpClient()
        async with keep_alive_server(garbage) as (url, _):
            with pytest.raises(DiscoveryError) as unreadable:
                await get(client, url + "?token=s3cr3t")
        with pytest.raises(DiscoveryError) as malformed:
            await get(client, "http://[::1/?token=s3cr3t")
        await client.close()
        return unreadable.value, malformed.value

    unreadable, malformed = asyncio.run(run())
    assert unreadable.reason == malformed.reason == "ConnectionFailed"
    assert "sent no readable HTTP answer: the answer does not start with an HTTP/1.x" in str(
        unreadable
    )
    assert malformed.message == "the discovery URL is malformed"
    assert "s3cr3t" not in str(unreadable) + str(malformed)


def test_a_burst_of_calls_to_a_cold_origin_opens_a_few_connections_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 calls at once to an origin with no kept connection: at most CONNECTS_PER_ORIGIN
    connects are in flight (not 200 SYNs into one accept queue), and every call is answered,
    most on connections the first ones opened."""
    in_flight, most = 0, 0
    real_connect = connections.Pool._connect

    async def counted(self: connections.Pool, origin: object, addresses: object) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await asyncio.sleep(0.01)  # a connect that takes a while, as under load
            return await real_connect(self, origin, addresses)  # type: ignore[arg-type]
        finally:
            in_flight -= 1

    monkeypatch.setattr(connections.Pool, "_connect", counted)

    async def run() -> tuple[list[int], int]:
        client = HttpClient()
        async with keep_alive_server(answer_ok) as (url, server):
            answers = await asyncio.gather(*(get(client, url) for _ in range(200)))
            await client.close()
        return [a.status for a in answers], server.connections

    statuses, opened = asyncio.run(run())
    assert statuses == [200] * 200
    assert most == connections.CONNECTS_PER_ORIGIN
    assert opened < 200, "the waiting calls took connections the first ones freed"


class CountingResolver:
    """Answers every name with loopback and counts the lookups."""

    def __init__(self) -> None:
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int, family: int) -> list[dict[str, object]]:
        self.lookups.append(host)
        return [{"host": "127.0.0.1", "port": port}]

    async def close(self) -> None:
        return None


def test_the_dns_cache_keeps_a_bounded_number_of_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts of deleted DirectServices do not stay cached for ever: past the bound, expired
    answers go first, then the oldest; the newest answers are still reused."""
    monkeypatch.setattr(connections, "DNS_CACHE_ENTRIES", 4)

    async def run() -> tuple[int, list[str]]:
        resolver = CountingResolver()
        pool = connections.Pool(resolver, limit=8, dns_cache_seconds=60)  # type: ignore[arg-type]
        for i in range(10):
            await pool._resolve(f"h{i}.test", 80)
        size = len(pool._dns)
        resolver.lookups.clear()
        for i in (9, 8, 7, 6, 0):  # the four newest are kept, the first was dropped
            await pool._resolve(f"h{i}.test", 80)
        return size, resolver.lookups

    size, lookups = asyncio.run(run())
    assert size == 4
    assert lookups == ["h0.test"]


def test_a_full_dns_cache_drops_expired_answers_before_fresh_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connections, "DNS_CACHE_ENTRIES", 3)

    async def run() -> set[str]:
        pool = connections.Pool(CountingResolver(), limit=8, dns_cache_seconds=60)  # type: ignore[arg-type]
        for host in ("old.test", "fresh1.test", "fresh2.test"):
            await pool._resolve(host, 80)
        until, addresses = pool._dns[("old.test", 80)]
        pool._dns[("old.test", 80)] = (until - 120, addresses)  # expired a minute ago
        first = next(iter(pool._dns))
        pool._dns[first] = pool._dns.pop(first)  # no longer the oldest stored
        await pool._resolve("new.test", 80)
        return {host for host, _ in pool._dns}

    assert asyncio.run(run()) == {"fresh1.test", "fresh2.test", "new.test"}
