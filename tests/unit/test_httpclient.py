"""The shared HTTP client against real servers on loopback: caps, redirects, failures."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from directservice.core.model import DiscoveryError
from directservice.discovery.httpclient import (
    HttpClient,
    HttpResponse,
    parse_retry_after,
    redact_url,
)
from loopback import serve

pytestmark = pytest.mark.unit

CAP = 1000


@asynccontextmanager
async def raw_server(answer: bytes | None) -> AsyncIterator[str]:
    """A bare TCP server that reads a request and writes `answer` (None: hang up)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is not None:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def get(url: str, *, read_timeout: float = 2.0, cap: int = CAP) -> HttpResponse:
    client = HttpClient(max_body_bytes=cap)
    try:
        return await client.request("GET", url, connect_timeout=1.0, read_timeout=read_timeout)
    finally:
        await client.close()


def failure(coro: Awaitable[Any]) -> DiscoveryError:
    async def run() -> DiscoveryError:
        try:
            await coro
        except DiscoveryError as exc:
            return exc
        raise AssertionError("expected a DiscoveryError")

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- answers -----------------------------------------------------------------------------


def test_a_small_answer_is_returned_with_a_redacted_url() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"q": request.query_string}, headers={"X-Trace": "t1"})

    async def run() -> HttpResponse:
        async with serve({"/up": handler}) as base:
            return await get(f"{base}/up?token=secret")

    resp = asyncio.run(run())
    assert resp.status == 200
    assert resp.body == b'{"q": "token=secret"}'  # the query was sent ...
    assert "secret" not in resp.url  # ... but is not kept where it could be logged
    assert resp.url.endswith("/up")
    assert resp.headers.get("x-trace") == "t1"


def test_a_body_of_exactly_the_cap_is_accepted() -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * CAP)

    async def run() -> HttpResponse:
        async with serve({"/": handler}) as base:
            return await get(base + "/")

    assert asyncio.run(run()).body == b"x" * CAP


def test_a_declared_length_over_the_cap_is_refused() -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * (CAP + 1))

    async def run() -> HttpResponse:
        async with serve({"/": handler}) as base:
            return await get(base + "/")

    exc = failure(run())
    assert exc.reason == "ResponseTooLarge"
    assert "announced 1001 bytes" in exc.message


def test_a_chunked_body_over_the_cap_is_refused() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(50):
            await resp.write(b"y" * 100)
        await resp.write_eof()
        return resp

    async def run() -> HttpResponse:
        async with serve({"/": handler}) as base:
            return await get(base + "/")

    exc = failure(run())
    assert exc.reason == "ResponseTooLarge"
    assert "sent over 1000 bytes" in exc.message


def test_a_chunked_body_under_the_cap_is_read_whole() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for n in range(9):
            await resp.write(str(n).encode() * 100)
        await resp.write_eof()
        return resp

    async def run() -> HttpResponse:
        async with serve({"/": handler}) as base:
            return await get(base + "/")

    assert asyncio.run(run()).body == b"".join(str(n).encode() * 100 for n in range(9))


def test_a_redirect_is_returned_not_followed() -> None:
    landed: list[str] = []

    async def moved(_: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/landed"})

    async def target(request: web.Request) -> web.Response:
        landed.append(request.path)
        return web.Response(text="followed")

    async def run() -> HttpResponse:
        async with serve({"/": moved, "/landed": target}) as base:
            return await get(base + "/")

    resp = asyncio.run(run())
    assert resp.status == 302
    assert resp.headers["Location"] == "/landed"
    assert landed == []


def test_header_names_are_case_insensitive() -> None:
    # Proxies and HTTP/2 gateways send header names in lower case.
    answer = (
        b"HTTP/1.1 429 Too Many Requests\r\n"
        b"retry-after: 7\r\nx-request-id: abc\r\ncontent-length: 0\r\n\r\n"
    )

    async def run() -> HttpResponse:
        async with raw_server(answer) as base:
            return await get(base + "/")

    resp = asyncio.run(run())
    assert resp.status == 429
    assert resp.headers.get("Retry-After") == "7"
    assert resp.headers.get("X-Request-Id") == "abc"


# --- failures ----------------------------------------------------------------------------


def test_connection_refused() -> None:
    url = f"http://user:pw@127.0.0.1:{free_port()}/up?token=secret"
    exc = failure(get(url))
    assert exc.reason == "ConnectionFailed"
    assert "secret" not in str(exc)
    assert "pw" not in str(exc)
    assert "/up" in exc.message


def test_a_server_that_hangs_up_is_a_connection_failure() -> None:
    async def run() -> HttpResponse:
        async with raw_server(None) as base:
            return await get(base + "/")

    assert failure(run()).reason == "ConnectionFailed"


def test_no_answer_in_time_is_a_timeout() -> None:
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="late")

    async def run() -> HttpResponse:
        async with serve({"/": slow}) as base:
            try:
                return await get(base + "/?token=secret", read_timeout=0.2)
            finally:
                release.set()

    started = time.monotonic()
    exc = failure(run())
    assert exc.reason == "Timeout"
    assert "secret" not in str(exc)
    assert time.monotonic() - started < 3


def test_a_body_that_stalls_is_a_timeout() -> None:
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        await resp.write(b"{")
        await asyncio.wait_for(release.wait(), 5)
        return resp

    async def run() -> HttpResponse:
        async with serve({"/": stall}) as base:
            try:
                return await get(base + "/", read_timeout=0.2)
            finally:
                release.set()

    assert failure(run()).reason == "Timeout"


def test_the_client_works_again_after_close() -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def run() -> list[int]:
        client = HttpClient()
        statuses = []
        async with serve({"/": handler}) as base:
            for _ in range(2):
                resp = await client.request("GET", base + "/", connect_timeout=1, read_timeout=1)
                statuses.append(resp.status)
                await client.close()
        return statuses

    assert asyncio.run(run()) == [200, 200]


# --- helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("http://eas.example/up?token=abc", "http://eas.example/up"),
        ("https://user:pass@eas.example:8443/a/b?x=1#frag", "https://eas.example:8443/a/b"),
        ("http://user@eas.example/", "http://eas.example/"),
        ("http://eas.example/up", "http://eas.example/up"),
    ],
)
def test_redact_url(url: str, safe: str) -> None:
    assert redact_url(url) == safe


def test_retry_after_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 30 ") == 30.0
    assert parse_retry_after("0") == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5"])
def test_retry_after_unusable(value: str | None) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_http_date() -> None:
    now = datetime.datetime(2015, 10, 21, 7, 27, tzinfo=datetime.UTC).timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0


def test_retry_after_http_date_defaults_to_the_clock() -> None:
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=90)
    waited = parse_retry_after(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert waited is not None
    assert 80 < waited <= 90
