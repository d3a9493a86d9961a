"""The TCP and HTTP probes against real servers on loopback, started by each test."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from directservice.api.spec import HealthCheckSpec, ProbeKind
from directservice.emulator.tls import self_signed
from directservice.health.probe import (
    STATUS_LINE_CAP,
    USER_AGENT,
    StatusLineReader,
    probe,
    tcp_check,
)

pytestmark = pytest.mark.unit

HTTP = HealthCheckSpec(kind=ProbeKind.HTTP, timeout=2.0)
SLACK = 1.0  # s: how much later than its timeout a probe may give up, on a busy machine


class Server:
    """An asyncio server on loopback that keeps the request heads it received."""

    def __init__(
        self, answer: bytes | None, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"
    ) -> None:
        self.answer = answer  # None: accept, read, never answer
        self.tls = tls
        self.heads: list[bytes] = []
        self.target = (host, 0)  # the port is known once started
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> Server:
        host = self.target[0]
        self._server = await asyncio.start_server(self._serve, host, 0, ssl=self.tls)
        self.target = (host, self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.wait_for(self._served(), 5)  # every handler saw its connection end

    async def _served(self) -> None:
        while self._handlers:
            await asyncio.gather(*self._handlers)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            if self.answer is None:
                await reader.read()  # until the probe gives up and closes
            else:
                writer.write(self.answer)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


def answer(status: int, reason: str = "X") -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode()


def run(body: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(body())


def refused_port() -> socket.socket:
    """A port bound on loopback that never listens: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


# --- TCP ----------------------------------------------------------------------------------


def test_tcp_passes_on_an_open_port() -> None:
    async def body() -> None:
        accepted = asyncio.Event()

        def on_connect(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set()
            writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result = await tcp_check("127.0.0.1", port, 2.0)
        assert (result.ok, result.reason) == (True, "ok")
        await asyncio.wait_for(accepted.wait(), 5)  # a real connection reached the server
        server.close()

    run(body)


def test_tcp_fails_refused_on_a_closed_port() -> None:
    async def body() -> None:
        with refused_port() as closed:
            result = await tcp_check(*closed.getsockname(), 2.0)
        assert (result.ok, result.reason) == (False, "refused")

    run(body)


def test_tcp_fails_by_timeout_when_the_handshake_never_completes() -> None:
    async def body() -> None:
        with socket.socket() as full:  # its accept queue fills up; later SYNs are dropped
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            target = full.getsockname()
            for _ in range(8):
                started = time.monotonic()
                result = await tcp_check(*target, 0.3)
                if not result.ok:
                    break
            elapsed = time.monotonic() - started
        assert (result.ok, result.reason) == (False, "timeout")
        assert 0.3 <= elapsed < 0.3 + SLACK

    run(body)


def test_tcp_on_a_malformed_address_fails_without_raising() -> None:
    async def body() -> None:
        result = await tcp_check("300.1.2.3", 80, 1.0)
        assert not result.ok and result.reason.startswith("error")

    run(body)


def test_cancelling_a_tcp_check_closes_its_socket() -> None:
    async def body() -> None:
        with socket.socket() as full:
            full.bind(("127.0.0.1", 0))
            full.listen(0)
            await tcp_check(*full.getsockname(), 0.2)  # fills the accept queue
            before = open_descriptors()
            check = tcp_check(*full.getsockname(), 30.0)
            assert open_descriptors() == before + 1
            cleaned = asyncio.Event()
            check.add_done_callback(lambda _: cleaned.set())  # runs after the probe's own
            check.cancel()
            await asyncio.wait_for(cleaned.wait(), 5)
            assert open_descriptors() == before

    run(body)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


# --- HTTP ---------------------------------------------------------------------------------


def test_http_200_passes_and_sends_method_path_and_headers_as_configured() -> None:
    async def body() -> None:
        async with Server(answer(200, "OK")) as server:
            spec = replace(HTTP, method="HEAD", path="/healthz?deep=1")
            result = await probe(server.target, False, spec)
        assert (result.ok, result.reason) == (True, "ok")
        assert len(server.heads) == 1
        lines = server.heads[0].decode().split("\r\n")
        assert lines[0] == "HEAD /healthz?deep=1 HTTP/1.1"
        headers = dict(line.split(": ", 1) for line in lines[1:] if line)
        assert headers == {
            "Host": f"127.0.0.1:{server.target[1]}",
            "Connection": "close",
            "User-Agent": USER_AGENT,
        }

    run(body)


def test_http_503_fails_with_the_status() -> None:
    async def body() -> None:
        async with Server(answer(503, "Service Unavailable")) as server:
            result = await probe(server.target, False, HTTP)
        assert (result.ok, result.reason) == (False, "status 503")

    run(body)


@pytest.mark.parametrize(
    ("status", "low", "high", "ok"),
    [(404, 200, 404, True), (404, 200, 403, False), (199, 200, 399, False), (204, 204, 204, True)],
)
def test_http_status_range_is_inclusive(status: int, low: int, high: int, ok: bool) -> None:
    async def body() -> None:
        async with Server(answer(status)) as server:
            spec = replace(HTTP, status_min=low, status_max=high)
            result = await probe(server.target, False, spec)
        assert result.ok is ok
        assert result.reason == ("ok" if ok else f"status {status}")

    run(body)


def test_http_fails_by_timeout_when_the_server_never_answers() -> None:
    async def body() -> None:
        async with Server(None) as server:
            started = time.monotonic()
            result = await probe(server.target, False, replace(HTTP, timeout=0.3))
            elapsed = time.monotonic() - started
            assert len(server.heads) == 1  # the request did arrive
        assert (result.ok, result.reason) == (False, "timeout")
        assert 0.3 <= elapsed < 0.3 + SLACK

    run(body)


def test_http_fails_refused_on_a_closed_port() -> None:
    async def body() -> None:
        with refused_port() as closed:
            result = await probe(closed.getsockname(), False, HTTP)
        assert (result.ok, result.reason) == (False, "refused")

    run(body)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (b"", "closed"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "bad status line"),
        (b"HTTP/1.1 OK\r\n", "bad status line"),
    ],
)
def test_http_fails_on_an_answer_that_is_not_http(reply: bytes, reason: str) -> None:
    async def body() -> None:
        async with Server(reply) as server:
            result = await probe(server.target, False, HTTP)
        assert (result.ok, result.reason) == (False, reason)

    run(body)


def test_http_never_reads_more_than_its_cap_of_an_endless_status_line() -> None:
    async def body() -> None:
        sent = 0
        done = asyncio.Event()

        async def endless(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal sent
            writer.write(b"HTTP/1.1 200 ")
            try:
                while sent < 64 * 1024 * 1024:
                    writer.write(b"x" * 65536)
                    await writer.drain()
                    sent += 65536
            except ConnectionError:
                pass
            finally:
                done.set()
                writer.close()

        server = await asyncio.start_server(endless, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        result = await probe(("127.0.0.1", port), False, replace(HTTP, timeout=10.0))
        assert (result.ok, result.reason) == (False, "status line too long")
        await asyncio.wait_for(done.wait(), 10)  # the probe's reset stopped the server
        assert sent < 64 * 1024 * 1024
        server.close()

    run(body)


def test_the_status_line_reader_offers_no_more_than_its_cap() -> None:
    class Transport(asyncio.WriteTransport):
        def __init__(self) -> None:
            super().__init__()
            self.written, self.aborted = b"", False

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.written += bytes(data)

        def abort(self) -> None:
            self.aborted = True

        def is_closing(self) -> bool:
            return self.aborted

    async def body() -> None:
        line: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        reader = StatusLineReader(b"GET / HTTP/1.1\r\n\r\n", line)
        transport = Transport()
        reader.connection_made(transport)
        offered = 0
        while not transport.aborted:
            buffer = reader.get_buffer(-1)
            assert len(buffer) > 0
            buffer[:] = b"x" * len(buffer)
            offered += len(buffer)
            reader.buffer_updated(len(buffer))
        assert transport.written == b"GET / HTTP/1.1\r\n\r\n"
        assert offered == STATUS_LINE_CAP
        assert line.result() is None

    run(body)


def test_http_refuses_to_send_a_method_or_path_that_would_inject_lines() -> None:
    async def body() -> None:
        async with Server(answer(200)) as server:
            spec = replace(HTTP, path="/x HTTP/1.1\r\nX-Injected: 1\r\n")
            result = await probe(server.target, False, spec)
            assert server.heads == []
        assert (result.ok, result.reason) == (False, "invalid request")

    run(body)


def test_https_passes_against_a_self_signed_certificate(tmp_path: Path) -> None:
    async def body() -> None:
        context = self_signed(tmp_path).server_context()
        async with Server(answer(200), tls=context) as server:
            result = await probe(server.target, True, replace(HTTP, path="/healthz"))
            assert [head.split(b"\r\n")[0] for head in server.heads] == [b"GET /healthz HTTP/1.1"]
        assert (result.ok, result.reason) == (True, "ok")

    run(body)


def test_plain_http_to_a_tls_port_fails_and_tls_to_a_plain_port_too(tmp_path: Path) -> None:
    async def body() -> None:
        context = self_signed(tmp_path).server_context()
        async with Server(answer(200), tls=context) as server:
            plain = await probe(server.target, False, HTTP)

        async def answer_at_once(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(answer(200))
            await writer.drain()
            writer.close()

        server_plain = await asyncio.start_server(answer_at_once, "127.0.0.1", 0)
        port = server_plain.sockets[0].getsockname()[1]
        tls = await probe(("127.0.0.1", port), True, HTTP)
        server_plain.close()
        assert (plain.ok, tls.ok) == (False, False)
        assert plain.reason in {"closed", "reset"}
        assert tls.reason == "tls error"

    run(body)


def test_ipv6_instances_are_probed_over_ipv6_with_a_bracketed_host() -> None:
    async def body() -> None:
        async with Server(answer(200), host="::1") as server:
            tcp = await probe(server.target, False, HealthCheckSpec())
            http = await probe(server.target, False, HTTP)
        assert (tcp.ok, http.ok) == (True, True)
        assert f"Host: [::1]:{server.target[1]}\r\n".encode() in server.heads[-1]

    run(body)
