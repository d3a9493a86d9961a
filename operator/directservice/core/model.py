"""Domain types shared by every stage of the pipeline: source → desired → plan → apply.

Pure: no kopf, no kubernetes client, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from directservice.api.reasons import Reason


class AddressFamily(StrEnum):
    """EndpointSlice address types; a slice never mixes them."""

    IPV4 = "IPv4"
    IPV6 = "IPv6"

    @property
    def short(self) -> str:
        return "v4" if self is AddressFamily.IPV4 else "v6"


def family_of(ip: str) -> AddressFamily:
    """The address family of an IP literal (the caller has validated it)."""
    return AddressFamily.IPV4 if ipaddress.ip_address(ip).version == 4 else AddressFamily.IPV6


@dataclass(frozen=True, order=True, slots=True)  # thousands live: no __dict__ each
class Instance:
    """One model instance as a discovery API reports it, after parsing.

    `weight` keeps the provider's value (EAS weights default to 100); weight 0
    means "do not send traffic", which we publish as a not-ready endpoint.
    """

    ip: str
    port: int
    weight: float = 100.0
    ready: bool = True
    hostname: str | None = None
    scheme: str | None = None

    @property
    def serving(self) -> bool:
        return self.ready and self.weight > 0


@dataclass(frozen=True)
class DroppedEntry:
    """A discovery entry we refused to publish, and why (shown in status and Events)."""

    entry: str
    reason: str


@dataclass(frozen=True)
class Discovery:
    """A successful discovery answer: what will be published and what was dropped."""

    instances: tuple[Instance, ...]
    dropped: tuple[DroppedEntry, ...] = ()


class InternalError(Exception):
    """An unforeseen failure whose message is already safe to show (type and one line, with
    any secret of the poll removed); the poll loop reports it as InternalError. `trace` is
    the original traceback's frames, without exception text."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.trace = trace


def summarize(exc: BaseException, limit: int = 200, text: str | None = None) -> str:
    """An exception as its type and the first line of its text (`text` instead of str(exc):
    e.g. with secrets already removed), cut to `limit` characters."""
    lines = (str(exc) if text is None else text).strip().splitlines()
    first = lines[0] if lines else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DiscoveryError(Exception):
    """A failed discovery call. `reason` becomes the DiscoveryHealthy condition reason.

    Messages must never contain credentials: providers build them from status
    codes, exception class names and URLs without query strings.
    """

    def __init__(self, reason: Reason, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True, order=True)
class SliceKey:
    """What must be equal for endpoints to share a slice: family, port and protocol."""

    family: AddressFamily
    port: int
    app_protocol: str | None


@dataclass(frozen=True, slots=True)  # one per published endpoint
class EndpointState:
    """One published endpoint inside a slice (its address is the key in the slice).

    The three conditions are those of the EndpointSlice API: DNS returns only `ready`
    endpoints; `serving` tells weight-aware proxies they may finish requests in flight;
    `terminating` marks an instance that left discovery and is being drained.
    """

    ready: bool
    weight: float
    hostname: str | None = None
    serving: bool = True
    terminating: bool = False


@dataclass(frozen=True)
class SliceContent:
    """The parts of an EndpointSlice the operator owns, independent of API metadata."""

    key: SliceKey
    port_name: str
    endpoints: tuple[tuple[str, EndpointState], ...] = ()

    def as_map(self) -> dict[str, EndpointState]:
        return dict(self.endpoints)


@dataclass(frozen=True)
class PublishedSlice:
    """An EndpointSlice as seen in the cluster (from the in-memory index)."""

    name: str
    resource_version: str
    content: SliceContent | None  # None: not parseable as ours → rewrite it
    owner_uid: str | None = None


@dataclass(frozen=True)
class ServiceShape:
    """The parts of the headless Service we own; compared to decide whether to write it."""

    port_name: str
    port: int | None
    app_protocol: str | None
    owner_uid: str | None


@dataclass(frozen=True)
class DesiredSlice:
    name: str
    content: SliceContent


@dataclass(frozen=True)
class SlicePlan:
    """The minimal set of writes that turns the published slices into the desired ones."""

    create: tuple[DesiredSlice, ...] = ()
    update: tuple[tuple[DesiredSlice, str], ...] = ()  # (slice, resourceVersion)
    delete: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = field(default=())

    @property
    def writes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)

    @property
    def empty(self) -> bool:
        return self.writes == 0
