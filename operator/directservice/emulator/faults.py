"""Fault model of the discovery emulator: what to do instead of answering normally.

Pure data and validation; the HTTP rendering lives in :mod:`.serving`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

DEFAULT_OVERSIZE_BYTES = 16 * 1024 * 1024
DEFAULT_TRICKLE_RATE = 1.0  # bytes per second
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class FaultError(ValueError):
    """A fault specification is invalid (the admin API answers 400)."""


class FaultMode(enum.StrEnum):
    STATUS = "status"  # answer with a given status, body and headers
    DELAY = "delay"  # wait, then answer normally (client read timeouts)
    GARBAGE = "garbage"  # 200 with a body that is not JSON
    EMPTY = "empty"  # 200 with no instances
    NULL = "null"  # 200 with the instance list set to null
    WRONG_SHAPE = "wrong_shape"  # 200 with valid JSON of another shape
    OVERSIZE = "oversize"  # 200 with a valid-looking JSON body of a given size
    TRICKLE = "trickle"  # the normal answer, its body sent a byte at a time (slow loris)
    REDIRECT = "redirect"  # 3xx to a given location
    CLOSE = "close"  # drop the connection without answering


@dataclass(frozen=True)
class Fault:
    """One injected fault. ``count`` is how many more requests it applies to (None: until
    cleared); ``service`` None matches every service. ``id`` is assigned by the state."""

    mode: FaultMode
    service: str | None = None
    count: int | None = None
    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    size: int = DEFAULT_OVERSIZE_BYTES
    chunked: bool = False  # oversize: no Content-Length, so only a streaming cap stops it
    rate: float = DEFAULT_TRICKLE_RATE  # trickle: body bytes per second
    location: str | None = None
    document: Any = None  # wrong_shape: the JSON to serve instead (None: a default list)
    id: int = 0

    def matches(self, service: str) -> bool:
        return self.service is None or self.service == service

    def consumed(self) -> Fault | None:
        """The fault after one more request has hit it; None once its count is used up."""
        if self.count is None:
            return self
        if self.count <= 1:
            return None
        return dataclasses.replace(self, count=self.count - 1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "mode": str(self.mode), "service": self.service}
        out["count"] = self.count
        for key in _MODE_PARAMS[self.mode]:
            out[key] = _PARAM_GETTERS[key](self)
        return out


# Parameters each mode accepts, in JSON spelling; anything else is rejected to catch typos.
_MODE_PARAMS: dict[FaultMode, tuple[str, ...]] = {
    FaultMode.STATUS: ("status", "body", "content_type", "headers"),
    FaultMode.DELAY: ("seconds",),
    FaultMode.GARBAGE: ("body", "content_type"),
    FaultMode.EMPTY: (),
    FaultMode.NULL: (),
    FaultMode.WRONG_SHAPE: ("json",),
    FaultMode.OVERSIZE: ("bytes", "chunked"),
    FaultMode.TRICKLE: ("bytes_per_second",),
    FaultMode.REDIRECT: ("location", "status", "headers"),
    FaultMode.CLOSE: (),
}
_COMMON_KEYS = frozenset({"mode", "service", "count"})
_PARAM_GETTERS: dict[str, Callable[[Fault], Any]] = {
    "status": lambda f: f.status,
    "body": lambda f: f.body,
    "content_type": lambda f: f.content_type,
    "headers": lambda f: dict(f.headers),
    "seconds": lambda f: f.seconds,
    "json": lambda f: f.document,
    "bytes": lambda f: f.size,
    "chunked": lambda f: f.chunked,
    "bytes_per_second": lambda f: f.rate,
    "location": lambda f: f.location,
}


def parse_fault(data: Any) -> Fault:
    """Validate a fault as posted to ``POST /admin/faults``."""
    if not isinstance(data, Mapping):
        raise FaultError("a fault must be a JSON object")
    try:
        mode = FaultMode(str(data.get("mode")))
    except ValueError:
        modes = ", ".join(m.value for m in FaultMode)
        raise FaultError(f"mode must be one of: {modes}") from None
    unknown = set(data) - _COMMON_KEYS - set(_MODE_PARAMS[mode])
    if unknown:
        raise FaultError(f"unknown keys for mode {mode}: {', '.join(sorted(unknown))}")

    service = data.get("service")
    if service is not None and (not isinstance(service, str) or not service):
        raise FaultError("service must be a non-empty string or null")
    count = data.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise FaultError("count must be a positive integer or null")

    fault = Fault(mode=mode, service=service, count=count)
    if mode is FaultMode.STATUS:
        status = data.get("status")
        if not _is_int(status) or not 100 <= status <= 599:
            raise FaultError("status mode needs an integer status between 100 and 599")
        fault = dataclasses.replace(fault, status=status)
    elif mode is FaultMode.REDIRECT:
        status = data.get("status", 302)
        if not _is_int(status) or status not in REDIRECT_STATUSES:
            raise FaultError(f"redirect status must be one of {sorted(REDIRECT_STATUSES)}")
        location = data.get("location")
        if not isinstance(location, str) or not location:
            raise FaultError("redirect mode needs a location")
        fault = dataclasses.replace(fault, status=status, location=location)
    elif mode is FaultMode.DELAY:
        seconds = data.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise FaultError("delay mode needs seconds >= 0")
        fault = dataclasses.replace(fault, seconds=float(seconds))
    elif mode in (FaultMode.OVERSIZE, FaultMode.TRICKLE):
        fault = _with_body_pace(fault, data)
    elif mode is FaultMode.WRONG_SHAPE:
        fault = dataclasses.replace(fault, document=data.get("json"))
    return _with_body_and_headers(fault, data)


def _with_body_pace(fault: Fault, data: Mapping[str, Any]) -> Fault:
    """The size and framing of an oversize body, or the rate of a trickled one."""
    if fault.mode is FaultMode.TRICKLE:
        rate = data.get("bytes_per_second", DEFAULT_TRICKLE_RATE)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise FaultError("bytes_per_second must be a number > 0")
        return dataclasses.replace(fault, rate=float(rate))
    size = data.get("bytes", DEFAULT_OVERSIZE_BYTES)
    if not _is_int(size) or size < 1:
        raise FaultError("bytes must be a positive integer")
    chunked = data.get("chunked", False)
    if not isinstance(chunked, bool):
        raise FaultError("chunked must be a boolean")
    return dataclasses.replace(fault, size=size, chunked=chunked)


def _with_body_and_headers(fault: Fault, data: Mapping[str, Any]) -> Fault:
    body = data.get("body")
    if body is not None and not isinstance(body, str):
        raise FaultError("body must be a string")
    content_type = data.get("content_type")
    if content_type is not None and not isinstance(content_type, str):
        raise FaultError("content_type must be a string")
    headers = data.get("headers", {})
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int) for k, v in headers.items()
    ):
        raise FaultError("headers must map names to strings")
    return dataclasses.replace(
        fault,
        body=body,
        content_type=content_type,
        headers={k: str(v) for k, v in headers.items()},
    )


def _is_int(value: Any) -> TypeGuard[int]:
    # bool is an int subclass; JSON true is not a count or status.
    return isinstance(value, int) and not isinstance(value, bool)
