"""The instances of a Service from its SRV records, cached for their TTL.

`_<port>._tcp.<service>.<namespace>.svc.<zone>` lists one SRV record per ready endpoint
(CoreDNS leaves out the ones not ready); each target's address comes from the additional
section, or from A/AAAA queries when a server leaves it out. The answer is kept for the
smallest TTL of the records it was built from. When re-resolution fails (no answer, an
empty answer, a malformed one) the last good answer stays in use: a DNS hiccup never
empties the client.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .dnsclient import DnsClient
from .dnswire import RCODE_NOERROR, TYPE_A, TYPE_AAAA, TYPE_SRV, Record, SrvData
from .errors import DnsError, DnsNoAnswer, NoInstancesError

Clock = Callable[[], float]


@dataclass(frozen=True, order=True)
class Instance:
    """One address to call. Two instances are the same when IP and port are."""

    ip: str
    port: int
    target: str = field(default="", compare=False)

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@dataclass(frozen=True)
class Resolution:
    name: str
    instances: tuple[Instance, ...]
    ttl: int


class InstanceSource(Protocol):
    def instances(self) -> Sequence[Instance]: ...


def srv_name(
    service: str, namespace: str, port_name: str = "http", zone: str | None = "cluster.local"
) -> str:
    """The SRV name of a Service's named port: absolute with a zone, else relative (for the
    search list of /etc/resolv.conf to complete)."""
    base = f"_{port_name}._tcp.{service}.{namespace}.svc"
    return f"{base}.{zone.strip('.')}." if zone else base


def resolve_srv(dns: DnsClient, name: str) -> Resolution:
    """One resolution of `name`: the instances of its best (lowest) SRV priority."""
    qualified, message = dns.lookup(name, TYPE_SRV)
    offers = [
        (record, record.value)
        for record in message.answers
        if isinstance(record.value, SrvData)
        and record.value.port
        and record.value.target not in ("", ".")  # RFC 2782: target "." means no service
    ]
    if not offers:
        raise DnsNoAnswer(f"{qualified}: no usable SRV record")
    best = min(srv.priority for _, srv in offers)
    glue: dict[str, list[Record]] = {}
    for record in message.additional:
        if record.rtype in (TYPE_A, TYPE_AAAA):
            glue.setdefault(record.name.lower().rstrip("."), []).append(record)
    instances: set[Instance] = set()
    ttls: list[int] = []
    for record, srv in offers:
        if srv.priority != best:
            continue
        addresses = glue.get(srv.target.lower().rstrip(".")) or _addresses_of(dns, srv.target)
        for address in addresses:
            instances.add(Instance(str(address.value), srv.port, srv.target))
            ttls.append(address.ttl)
        if addresses:
            ttls.append(record.ttl)
    if not instances:
        raise DnsNoAnswer(f"{qualified}: no SRV target has an address")
    return Resolution(qualified, tuple(sorted(instances)), min(ttls))


def _addresses_of(dns: DnsClient, target: str) -> list[Record]:
    found: list[Record] = []
    for rtype in (TYPE_A, TYPE_AAAA):
        message = dns.query(target if target.endswith(".") else target + ".", rtype)
        if message.rcode == RCODE_NOERROR:
            found += [r for r in message.answers if r.rtype == rtype and isinstance(r.value, str)]
    return found


class SrvResolver:
    """The instances behind one SRV name, re-resolved when the TTL of the last answer ends.

    Counters: `resolutions` (good answers), `failures` (re-resolutions that failed),
    `stale` (the instances in use are the last good ones, kept past their TTL because
    re-resolution failed; retried every `retry_interval` seconds), `last_error`.
    """

    def __init__(
        self,
        name: str,
        dns: DnsClient | None = None,
        *,
        clock: Clock = time.monotonic,
        retry_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.dns = dns if dns is not None else DnsClient()
        self.resolutions = 0
        self.failures = 0
        self.stale = False
        self.last_error: DnsError | None = None
        self._clock = clock
        self._retry_interval = retry_interval
        self._current: Resolution | None = None
        self._expires_at = float("-inf")
        self._lock = threading.Lock()

    @property
    def current(self) -> Resolution | None:
        """The answer in use (None before the first good one)."""
        return self._current

    def instances(self) -> tuple[Instance, ...]:
        with self._lock:
            now = self._clock()
            if now >= self._expires_at:
                self._refresh(now)
            if self._current is None:
                raise NoInstancesError(f"{self.name}: not resolved ({self.last_error})")
            return self._current.instances

    def expire(self) -> None:
        """Re-resolve on the next use, whatever the TTL says."""
        with self._lock:
            self._expires_at = float("-inf")

    def _refresh(self, now: float) -> None:
        try:
            resolution = resolve_srv(self.dns, self.name)
        except DnsError as err:
            self.failures += 1
            self.last_error = err
            # Without a good answer yet there is nothing to keep: try again on the next use.
            if self._current is not None:
                self.stale = True
                self._expires_at = now + self._retry_interval
            return
        self.resolutions += 1
        self.stale = False
        self._current = resolution
        self._expires_at = now + resolution.ttl
