"""Keep-alive connections for discovery calls, a pool of them per origin, and one exchange.

A connection carries one exchange at a time (HTTP/1.1 without pipelining). The pool hands
out an idle connection of the origin when it has one, else opens a new one to an address
the resolver gave (and, with an AddressPolicy, checked), within `limit` open connections in
all. The exchange's deadlines start when its request is written, never while it queued for
a connection: the operator's own congestion is not the upstream's slowness.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections import deque
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver

from directservice.discovery.http11 import Answer, AnswerParser, ProtocolError

IDLE_SECONDS = 15.0  # an idle connection older than this is closed, not reused
DNS_CACHE_ENTRIES = 1024  # distinct (host, port) answers kept
# Connects in flight to one origin. A cold start sends the first polls of thousands of
# DirectServices within seconds: unbounded, their connects overflow the server's accept
# queue, the SYNs it drops are retried a second later, and a 1 s connect timeout fails them.
CONNECTS_PER_ORIGIN = 16


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int
    ssl: ssl.SSLContext | None  # None for http


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; `exchange` writes a request and reads its answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser: AnswerParser | None = None
        self._done: asyncio.Future[Answer] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_byte = 0.0
        self._read_timeout = 0.0
        self._deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        parser, done = self._parser, self._done
        if parser is None or done is None or done.done():
            self.close()  # unasked-for bytes: the connection is no longer in step
            return
        self._last_byte = asyncio.get_running_loop().time()
        try:
            parser.feed(data)
        except Exception as exc:  # handed to the waiting exchange
            self._fail(exc)
            return
        if parser.answer is not None:
            done.set_result(parser.answer)

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        self.closed = True
        parser, done = self._parser, self._done
        if parser is None or done is None or done.done():
            return
        try:
            parser.end_of_stream()
        except ProtocolError as error:
            done.set_exception(exc if exc is not None else error)
            return
        if parser.answer is not None:
            done.set_result(parser.answer)

    def _fail(self, exc: BaseException) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    @property
    def answered_nothing(self) -> bool:
        """Did the peer close without sending a byte (a reused connection it had dropped)?"""
        return self._parser is None or not self._parser.started

    def _check_time(self) -> None:
        """The one timer of an exchange: no byte for `read_timeout`, or past the deadline."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= self._deadline or now - self._last_byte >= self._read_timeout:
            self._fail(TimeoutError())
            return
        self._timer = loop.call_at(
            min(self._last_byte + self._read_timeout, self._deadline), self._check_time
        )

    async def exchange(
        self, request: bytes, cap: int, *, read_timeout: float, deadline: float
    ) -> Answer:
        """Write `request`, read the answer. TimeoutError when no byte comes for
        `read_timeout` seconds, or the whole answer is not in by `deadline` (loop time)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._parser = AnswerParser(cap)
        self._done = done = loop.create_future()
        self._last_byte = loop.time()
        self._read_timeout, self._deadline = read_timeout, deadline
        self._timer = loop.call_at(min(self._last_byte + read_timeout, deadline), self._check_time)
        try:
            self.transport.write(request)
            answer: Answer = await done
            return answer
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not done.done() or done.cancelled() or done.exception() is not None:
                done.cancel()
                self.close()  # half an answer: nothing else may follow on it


class Pool:
    """Idle connections per origin, and at most `limit` open connections in all (idle ones
    count; one gives its place up when another origin needs it)."""

    def __init__(self, resolver: AbstractResolver, limit: int, dns_cache_seconds: float) -> None:
        self._resolver = resolver
        self._idle: dict[Origin, deque[Connection]] = {}
        self._limit = limit
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()  # for a place
        self._connecting: dict[Origin, int] = {}
        self._connect_waiters: dict[Origin, deque[asyncio.Future[None]]] = {}
        self._dns_cache_seconds = dns_cache_seconds
        self._dns: dict[tuple[str, int], tuple[float, list[tuple[str, int]]]] = {}

    def _take_idle(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the likeliest still open
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            self._drop(conn)
        return None

    async def acquire(self, origin: Origin, connect_timeout: float) -> tuple[Connection, bool]:
        """A kept connection (and True), or a new one. A wait for a free place is not timed:
        it is the operator's own congestion. Opening raises OSError (an AddressRefused from
        the resolver, too), TimeoutError or ssl.SSLError."""
        while True:
            conn = self._take_idle(origin)
            if conn is not None:
                return conn, True
            if self._connecting.get(origin, 0) >= CONNECTS_PER_ORIGIN:
                await _wait(self._connect_waiters.setdefault(origin, deque()))
                continue
            if self._open < self._limit or self._evict_oldest_idle():
                break
            await _wait(self._waiters)
        self._open += 1
        self._connecting[origin] = self._connecting.get(origin, 0) + 1
        try:
            async with asyncio.timeout(connect_timeout):
                addresses = await self._resolve(origin.host, origin.port)
                return await self._connect(origin, addresses), False
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        finally:
            left = self._connecting[origin] - 1
            if left:
                self._connecting[origin] = left
            else:
                del self._connecting[origin]
            self._wake_connecting(origin)

    def _wake_one(self) -> None:
        _wake(self._waiters)

    def _wake_connecting(self, origin: Origin) -> None:
        waiting = self._connect_waiters.get(origin)
        if waiting is not None:
            _wake(waiting)
            if not waiting:
                del self._connect_waiters[origin]

    def _evict_oldest_idle(self) -> bool:
        """All places taken: an idle connection (of any origin) gives its place up."""
        oldest: deque[Connection] | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest[0].idle_since):
                oldest = idle
        if oldest is None:
            return False
        conn = oldest.popleft()
        conn.close()
        self._open -= 1
        return True

    async def _resolve(self, host: str, port: int) -> list[tuple[str, int]]:
        if _is_ip(host):  # a literal (checked by the client) is where to connect
            return [(host, port)]
        key = (host, port)
        kept = self._dns.get(key)
        if kept is not None and time.monotonic() < kept[0]:
            return kept[1]
        answers = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        addresses = [(a["host"], a["port"]) for a in answers]
        if self._dns_cache_seconds > 0:
            self._remember(key, addresses)
        return addresses

    def _remember(self, key: tuple[str, int], addresses: list[tuple[str, int]]) -> None:
        """Cache an answer. A full cache drops its expired answers, then its oldest: hosts of
        deleted DirectServices must not stay for the life of the process."""
        now = time.monotonic()
        self._dns.pop(key, None)  # stored again below, as the newest
        if len(self._dns) >= DNS_CACHE_ENTRIES:
            for old in [k for k, (until, _) in self._dns.items() if until <= now]:
                del self._dns[old]
            while len(self._dns) >= DNS_CACHE_ENTRIES:
                del self._dns[next(iter(self._dns))]
        self._dns[key] = (now + self._dns_cache_seconds, addresses)

    async def _connect(self, origin: Origin, addresses: list[tuple[str, int]]) -> Connection:
        loop = asyncio.get_running_loop()
        error: OSError = OSError(f"{origin.host} resolved to no address")
        for ip, port in addresses:
            try:
                _, conn = await loop.create_connection(
                    Connection,
                    ip,
                    port,
                    ssl=origin.ssl,
                    server_hostname=origin.host if origin.ssl is not None else None,
                )
            except ssl.SSLError:
                raise
            except OSError as exc:
                error = exc
                continue
            sock = conn.transport.get_extra_info("socket") if conn.transport else None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn
        raise error

    def release(self, origin: Origin, conn: Connection, *, reuse: bool) -> None:
        if reuse and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, deque()).append(conn)
            self._wake_connecting(origin)  # one waiting to connect there takes it instead
            self._wake_one()  # a waiter of this origin takes it; another evicts it
        else:
            self._drop(conn)

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self._open -= 1
        self._wake_one()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                self._drop(idle.pop())
        self._idle.clear()
        self._dns.clear()


async def _wait(queue: deque[asyncio.Future[None]]) -> None:
    """Until woken (`_wake`). A waiter cancelled after its wake passes the wake on."""
    waiter = asyncio.get_running_loop().create_future()
    queue.append(waiter)
    try:
        await waiter
    except asyncio.CancelledError:
        if waiter.done() and not waiter.cancelled():
            _wake(queue)  # woken, but gone: the next one gets the turn
        else:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
        raise


def _wake(queue: deque[asyncio.Future[None]]) -> None:
    while queue:
        waiter = queue.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return
