"""Probes of one instance, on the event loop, standard library only.

Thousands of checks a second must cost little CPU, so neither probe goes through streams,
`asyncio.wait_for` or an HTTP client library:

- TCP: a non-blocking connect watched with `add_writer` and bounded by one `call_later`
  handle; the probe is a plain Future (no Task), resolved by those callbacks.
- HTTP: `create_connection` with a small buffered protocol that reads nothing but the
  status line, into a fixed buffer of `STATUS_LINE_CAP` bytes, so an endless or hostile
  answer can never make the probe read more. TLS when the instance's scheme is https.

Every connection is closed with a reset (SO_LINGER 0) instead of a FIN: the operator
closes first, and thousands of TIME_WAIT sockets a minute would otherwise pile up on it.
A probe never raises for network errors; it returns a `ProbeResult` with a short reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import socket
import ssl
import struct
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from directservice.api.spec import HealthCheckSpec, ProbeKind
from directservice.core.health import EndpointId

STATUS_LINE_CAP = 4096  # bytes: the most an HTTP probe ever reads
USER_AGENT = "directservice-health/1"
_LINGER_RESET = struct.pack("ii", 1, 0)
_REASONS = {
    errno.ECONNREFUSED: "refused",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.ECONNRESET: "reset",
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    reason: str  # "ok", or why it failed: "refused", "timeout", "status 503", ...


PASSED = ProbeResult(True, "ok")
TIMED_OUT = ProbeResult(False, "timeout")


class Prober(Protocol):
    """One check of `target`; `tls` is whether the instance speaks https."""

    def __call__(
        self, target: EndpointId, tls: bool, spec: HealthCheckSpec
    ) -> Awaitable[ProbeResult]: ...


def probe(target: EndpointId, tls: bool, spec: HealthCheckSpec) -> Awaitable[ProbeResult]:
    """The operator's prober: `spec.kind` decides; TCP ignores `tls` (connect only)."""
    ip, port = target
    if spec.kind is ProbeKind.HTTP:
        return http_check(ip, port, spec, tls=tls)
    return tcp_check(ip, port, spec.timeout)


def _failed(err: int) -> ProbeResult:
    """The reason for an errno: a word for the usual ones, else "error ENAME"."""
    if err in _REASONS:
        return ProbeResult(False, _REASONS[err])
    return ProbeResult(False, f"error {errno.errorcode.get(err, err)}" if err else "error")


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _set_reset_on_close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already reset by the peer: closing is all that is left
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def _reset_close(sock: socket.socket) -> None:
    _set_reset_on_close(sock)
    sock.close()


def tcp_check(ip: str, port: int, timeout: float) -> asyncio.Future[ProbeResult]:
    """Passes when a TCP connection to ip:port is established within `timeout` seconds.

    Must be called on the running loop. Cancelling the future closes the socket."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[ProbeResult] = loop.create_future()
    try:
        sock = socket.socket(_family(ip), socket.SOCK_STREAM)
    except OSError as exc:  # out of file descriptors, say
        done.set_result(_failed(exc.errno or 0))
        return done
    sock.setblocking(False)
    try:
        err = sock.connect_ex((ip, port))
    except OSError as exc:  # an address the kernel refuses outright
        err = exc.errno or errno.EINVAL
    if err not in (errno.EINPROGRESS, 0):
        sock.close()
        done.set_result(_failed(err))
        return done
    fd = sock.fileno()

    def finish(result: ProbeResult) -> None:
        timer.cancel()
        loop.remove_writer(fd)
        _reset_close(sock)
        if not done.done():
            done.set_result(result)

    def on_writable() -> None:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        finish(PASSED if err == 0 else _failed(err))

    def on_cancelled(future: asyncio.Future[ProbeResult]) -> None:
        if future.cancelled():
            finish(TIMED_OUT)  # releases the socket; the result goes nowhere

    timer = loop.call_later(timeout, finish, TIMED_OUT)
    loop.add_writer(fd, on_writable)
    done.add_done_callback(on_cancelled)
    return done


@functools.cache
def _unverified_tls() -> ssl.SSLContext:
    """No certificate checks: instances in a peered VPC are addressed by IP, which their
    certificates do not name, and the check only proves liveness; it sends no secret."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def request_bytes(ip: str, port: int, spec: HealthCheckSpec) -> bytes | None:
    """The HTTP/1.1 request of a check, or None when method or path could smuggle lines."""
    if any(c in spec.method for c in " \r\n") or any(c in spec.path for c in " \r\n"):
        return None
    host = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
    return (
        f"{spec.method} {spec.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"User-Agent: {USER_AGENT}\r\n\r\n"
    ).encode("latin-1", "replace")


def status_result(line: bytes, spec: HealthCheckSpec) -> ProbeResult:
    """Judges a status line such as b"HTTP/1.1 503 Service Unavailable"."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return ProbeResult(False, "bad status line")
    status = int(parts[1])
    if spec.status_min <= status <= spec.status_max:
        return PASSED
    return ProbeResult(False, f"status {status}")


class StatusLineReader(asyncio.BufferedProtocol):
    """Sends the request, reads into one fixed buffer until the status line ends."""

    def __init__(self, request: bytes, done: asyncio.Future[bytes | None]) -> None:
        self._request = request
        self._done = done
        self._buffer = bytearray(STATUS_LINE_CAP)
        self._filled = 0
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            _set_reset_on_close(sock)
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buffer)[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        start = self._filled
        self._filled += nbytes
        end = self._buffer.find(b"\n", start, self._filled)
        if end >= 0:
            self._settle(bytes(self._buffer[:end]).rstrip(b"\r"))
        elif self._filled >= STATUS_LINE_CAP:
            self._settle(None)  # no line end within the cap: not an HTTP answer

    def eof_received(self) -> bool:
        self._settle(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._settle(b"")

    def _settle(self, line: bytes | None) -> None:
        if not self._done.done():
            self._done.set_result(line)
        if self._transport is not None and not self._transport.is_closing():
            abort = getattr(self._transport, "abort", self._transport.close)
            abort()  # a reset, as for TCP probes; we have all we wanted


async def http_check(ip: str, port: int, spec: HealthCheckSpec, *, tls: bool) -> ProbeResult:
    """Passes when the status is within [status_min, status_max]; the whole exchange,
    connect and TLS handshake included, is bounded by `spec.timeout`."""
    request = request_bytes(ip, port, spec)
    if request is None:
        return ProbeResult(False, "invalid request")
    loop = asyncio.get_running_loop()
    line: asyncio.Future[bytes | None] = loop.create_future()
    transport: asyncio.BaseTransport | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            transport, _ = await loop.create_connection(
                lambda: StatusLineReader(request, line),
                ip,
                port,
                ssl=_unverified_tls() if tls else None,
                server_hostname="" if tls else None,
            )
            status = await line
    except TimeoutError:
        return TIMED_OUT
    except ssl.SSLError:
        return ProbeResult(False, "tls error")
    except OSError as exc:
        return _failed(exc.errno or 0)
    finally:
        if transport is not None and not transport.is_closing():
            getattr(transport, "abort", transport.close)()
    if status is None:
        return ProbeResult(False, "status line too long")
    if not status:
        return ProbeResult(False, "closed")
    return status_result(status, spec)
