"""The HTTP layer shared by every emulated discovery API ("flavour").

A flavour declares its routes and its normal answer; :meth:`Flavour.serve` applies any
queued fault, sends the response and records the request. Faults whose output depends on
the API's JSON shape (empty, null, wrong_shape, oversize) ask the flavour for that shape.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web

from .faults import Fault, FaultMode
from .state import EmulatorState, RequestRecord

log = logging.getLogger("directservice.emulator")

# Request headers worth keeping in the log: client identity, negotiation and credentials
# (the emulator only ever sees test credentials).
INTERESTING_HEADERS = (
    "User-Agent",
    "Accept",
    "Accept-Encoding",
    "Authorization",
    "X-Auth-Token",
    "X-Request-Id",
    "X-Sdk-Date",
    "X-Project-Id",
)
# Claims to be JSON but is not, like a proxy error page cut short.
GARBAGE_BODY = '{"endpoints": {"items": [ <html><body>502 Bad Gateway</body></html>'
_CHUNK = 64 * 1024
_TRICKLE_TICK = 0.1  # seconds between trickled pieces, at rates above 10 bytes/s


@dataclass(frozen=True)
class Answer:
    """A complete, non-streamed response."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, document: Any, headers: Mapping[str, str] | None = None) -> Answer:
        return cls(status, json.dumps(document).encode(), headers=dict(headers or {}))

    @classmethod
    def error(cls, status: int, message: str) -> Answer:
        return cls.json(status, {"code": status, "message": message})

    def to_response(self) -> web.Response:
        headers = {"Content-Type": self.content_type, **self.headers}
        return web.Response(status=self.status, body=self.body, headers=headers)


class Flavour(abc.ABC):
    """One vendor's discovery API. Subclasses set ``name``, list their routes (whose handlers
    call :meth:`serve` with the service key that faults and counters use) and build answers."""

    name: ClassVar[str]

    def __init__(self, state: EmulatorState, *, log_requests: bool = False) -> None:
        self.state = state
        self.log_requests = log_requests

    @abc.abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """The discovery routes of this API."""

    @abc.abstractmethod
    def answer(self, request: web.Request, service: str) -> Answer:
        """The normal answer (including this API's not-found or auth errors)."""

    @abc.abstractmethod
    def shaped(self, fault: Fault, service: str) -> Any:
        """The JSON document served for the empty, null and wrong_shape faults."""

    def credential(self, request: web.Request) -> str | None:
        """Who made the request, for per-credential counters (None: not counted)."""
        return None

    def oversize_parts(self, service: str) -> tuple[bytes, bytes, bytes]:
        """Prefix, one list item and suffix of a valid oversize document."""
        item = json.dumps({"ip": "192.0.2.1", "port": 1}).encode()
        return b'{"items": [', item, b"]}"

    async def serve(self, request: web.Request, service: str) -> web.StreamResponse:
        fault = self.state.take_fault(service)
        mode = fault.mode if fault is not None else None
        response: web.StreamResponse
        status: int | None = None
        try:
            if fault is not None and fault.mode is FaultMode.DELAY:
                await asyncio.sleep(fault.seconds)
            if fault is not None and fault.mode is FaultMode.CLOSE:
                response = _drop_connection(request)
            elif fault is not None and fault.mode is FaultMode.OVERSIZE:
                status = 200
                response = await self._send_oversize(request, service, fault)
            elif fault is not None and fault.mode is FaultMode.TRICKLE:
                answer = self.answer(request, service)
                status = answer.status
                response = await _trickle(request, answer, fault.rate)
            else:
                response = self._render(request, service, fault).to_response()
                status = response.status
                await response.prepare(request)
                await response.write_eof()
        except ConnectionError:
            # The client gave up (e.g. its read timeout fired during a delay); still logged.
            response = web.Response(status=status or 500)
        self._record(request, service, status, mode)
        return response

    def _render(self, request: web.Request, service: str, fault: Fault | None) -> Answer:
        if fault is None or fault.mode is FaultMode.DELAY:
            return self.answer(request, service)
        if fault.mode is FaultMode.STATUS:
            assert fault.status is not None
            if fault.body is None:
                answer = Answer.error(fault.status, "injected fault")
            else:
                answer = Answer(fault.status, fault.body.encode())
            return _customised(answer, fault)
        if fault.mode is FaultMode.REDIRECT:
            assert fault.status is not None and fault.location is not None
            headers = {**fault.headers, "Location": fault.location}
            return Answer(fault.status, b"", "text/plain", headers)
        if fault.mode is FaultMode.GARBAGE:
            body = GARBAGE_BODY if fault.body is None else fault.body
            return _customised(Answer(200, body.encode()), fault)
        return Answer.json(200, self.shaped(fault, service))

    async def _send_oversize(
        self, request: web.Request, service: str, fault: Fault
    ) -> web.StreamResponse:
        # Streamed so a large size costs the emulator little memory. Padding whitespace before
        # the suffix keeps the document valid JSON of exactly `size` bytes when size allows.
        # Chunked, the size is announced nowhere: only a cap on what is read stops a client.
        size = fault.size
        prefix, item, suffix = self.oversize_parts(service)
        room = size - len(prefix) - len(suffix)
        items = max(0, (room + 1) // (len(item) + 1))
        used = items * len(item) + max(0, items - 1)
        padding = max(0, room - used)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if fault.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(prefix) + used + padding + len(suffix)
        await response.prepare(request)
        await response.write(prefix + (item if items else b""))
        block_items = max(1, _CHUNK // (len(item) + 1))
        remaining = max(0, items - 1)
        while remaining:
            batch = min(block_items, remaining)
            await response.write((b"," + item) * batch)
            remaining -= batch
        await response.write(b" " * padding + suffix)
        await response.write_eof()
        return response

    def _record(
        self, request: web.Request, service: str, status: int | None, fault: FaultMode | None
    ) -> None:
        entry = RequestRecord(
            flavour=self.name,
            service=service,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            time=time.time(),
            status=status,
            fault=None if fault is None else str(fault),
            headers={h: request.headers[h] for h in INTERESTING_HEADERS if h in request.headers},
            credential=self.credential(request),
        )
        self.state.record(entry)
        if self.log_requests:
            shown = "closed" if status is None else status
            log.info(
                "%s %s -> %s%s",
                request.method,
                request.path_qs,
                shown,
                f" (fault: {fault})" if fault else "",
            )


async def _trickle(request: web.Request, answer: Answer, rate: float) -> web.StreamResponse:
    # Headers (with the true Content-Length) at once, then the body at `rate` bytes/s in
    # pieces of at least a byte: each piece resets a client's per-read timeout, so only a
    # limit on the whole exchange ends it.
    headers = {"Content-Type": answer.content_type, **answer.headers}
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.content_length = len(answer.body)
    await response.prepare(request)
    piece = max(1, int(rate * _TRICKLE_TICK))
    for start in range(0, len(answer.body), piece):
        if start:
            await asyncio.sleep(piece / rate)
        await response.write(answer.body[start : start + piece])
    await response.write_eof()
    return response


def _customised(answer: Answer, fault: Fault) -> Answer:
    content_type = fault.content_type or answer.content_type
    return Answer(answer.status, answer.body, content_type, {**answer.headers, **fault.headers})


def _drop_connection(request: web.Request) -> web.StreamResponse:
    # Abort the socket; aiohttp then fails to write the returned response and moves on
    # quietly, so the client sees the connection end without any HTTP answer.
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
