"""What each published endpoint says: discovery's answer plus health, drains and exclusions.

The conditions follow the EndpointSlice API, and CoreDNS returns only `ready` endpoints:

| the instance                          | ready | serving | terminating |
|---------------------------------------|-------|---------|-------------|
| left discovery, within drainSeconds   | false | false   | true        |
| named in spec.exclude                 | false | false   | false       |
| not ready in discovery                | false | false   | false       |
| failing its health checks (no panic)  | false | false   | false       |
| weight 0 in discovery (drained)       | false | true    | false       |
| otherwise                             | true  | true    | false       |

Every endpoint also gets a stable DNS-1123 hostname (see `hostnames`). Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from directservice.api.traffic import Exclusion
from directservice.core.model import Instance, PublishedSlice

EndpointId = tuple[str, int]  # (ip, port)

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One endpoint as it is published."""

    instance: Instance
    hostname: str
    ready: bool
    serving: bool
    terminating: bool = False

    @property
    def id(self) -> EndpointId:
        return (self.instance.ip, self.instance.port)


@dataclass(frozen=True)
class Drain:
    """An instance that left discovery, published as terminating until `until` (monotonic)."""

    instance: Instance
    until: float


@dataclass(frozen=True)
class Traffic:
    """What decides an endpoint's conditions besides the discovery answer."""

    failing: frozenset[EndpointId] = frozenset()  # unhealthy by active checks
    panic: bool = False  # too many fail: ignore `failing`
    exclude: tuple[Exclusion, ...] = ()
    draining: tuple[Drain, ...] = ()


@dataclass(frozen=True)
class Composition:
    endpoints: tuple[Endpoint, ...]
    excluded: tuple[str, ...] = field(default=())  # "ip:port" of the excluded endpoints


def endpoint_text(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def is_excluded(inst: Instance, exclude: Iterable[Exclusion]) -> bool:
    return any(rule.matches(inst.ip, inst.port) for rule in exclude)


def compose(instances: Sequence[Instance], traffic: Traffic) -> Composition:
    """The endpoints to publish, in a stable order (ip, port)."""
    answered = {(inst.ip, inst.port) for inst in instances}
    draining = [
        d.instance for d in traffic.draining if (d.instance.ip, d.instance.port) not in answered
    ]
    names = hostnames([*instances, *draining])
    endpoints: list[Endpoint] = []
    excluded: list[str] = []
    for inst in instances:
        key = (inst.ip, inst.port)
        if is_excluded(inst, traffic.exclude):
            excluded.append(endpoint_text(inst.ip, inst.port))
            ready = serving = False
        elif not inst.ready or (key in traffic.failing and not traffic.panic):
            ready = serving = False
        else:
            ready, serving = inst.weight > 0, True
        endpoints.append(Endpoint(inst, names[key], ready=ready, serving=serving))
    for inst in draining:
        key = (inst.ip, inst.port)
        endpoints.append(Endpoint(inst, names[key], ready=False, serving=False, terminating=True))
    endpoints.sort(key=lambda e: (e.instance.ip, e.instance.port))
    return Composition(tuple(endpoints), tuple(sorted(excluded)))


def checked(instances: Iterable[Instance], exclude: Collection[Exclusion]) -> list[Instance]:
    """The instances the health checker watches: all that discovery lists, but those
    excluded by hand (their state does not matter and must not tip the panic rule)."""
    return [inst for inst in instances if not is_excluded(inst, exclude)]


def update_drains(
    previous: Iterable[Drain],
    published: Sequence[PublishedSlice],
    answer: Collection[Instance],
    *,
    now: float,
    drain_seconds: float,
    adopt: bool = False,
) -> tuple[Drain, ...]:
    """The drains after an accepted answer. A published endpoint the answer no longer lists
    starts draining until now + drain_seconds; drains end when they expire or the answer
    lists the endpoint again. With `adopt` (the first plan after a start), terminating
    endpoints found in the slices are taken over with a fresh deadline; later, a
    terminating endpoint with no drain is one whose drain ended, and goes."""
    if drain_seconds <= 0:
        return ()
    listed = {(inst.ip, inst.port) for inst in answer}
    kept: dict[EndpointId, Drain] = {
        (d.instance.ip, d.instance.port): d
        for d in previous
        if d.until > now and (d.instance.ip, d.instance.port) not in listed
    }
    for slc in published:
        if slc.content is None:
            continue
        port, scheme = slc.content.key.port, slc.content.key.app_protocol
        for ip, state in slc.content.endpoints:
            key = (ip, port)
            if key in listed or key in kept or (state.terminating and not adopt):
                continue
            gone = Instance(
                ip, port, state.weight, ready=False, hostname=state.hostname, scheme=scheme
            )
            kept[key] = Drain(gone, now + drain_seconds)
    return tuple(kept[key] for key in sorted(kept))


def hostnames(instances: Sequence[Instance]) -> Mapping[EndpointId, str]:
    """A DNS-1123 label per instance, unique within the service:

    1. the provider's identity (its `hostname`), lower-cased with other characters turned
       into '-', when it is a valid label that no other instance of the answer also has;
    2. else the IP with dashes (10-1-2-3; IPv6 in its compressed form, or exploded when the
       compressed one is not a label), as CoreDNS itself names endpoints;
    3. with "-<port>" appended when other instances share the IP (on other ports).
    """
    identities = {(i.ip, i.port): _identity(i.hostname) for i in instances}
    taken = Counter(name for name in identities.values() if name)
    per_ip = Counter(i.ip for i in instances)
    names: dict[EndpointId, str] = {}
    for inst in instances:
        key = (inst.ip, inst.port)
        identity = identities[key]
        if identity and taken[identity] == 1:
            names[key] = identity
            continue
        name = _ip_label(inst.ip)
        names[key] = f"{name}-{inst.port}" if per_ip[inst.ip] > 1 else name
    return names


def _identity(hostname: str | None) -> str | None:
    if not hostname:
        return None
    label = _NOT_LABEL.sub("-", hostname.lower()).strip("-")[:63].rstrip("-")
    return label if _LABEL.match(label) else None


def _ip_label(ip: str) -> str:
    address = ipaddress.ip_address(ip)
    if address.version == 4:
        return ip.replace(".", "-")
    compressed = ip.replace(":", "-")
    return compressed if _LABEL.match(compressed) else address.exploded.replace(":", "-")
