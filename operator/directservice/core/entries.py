"""Turning raw discovery entries into publishable instances, one entry at a time.

A single bad address would make the API server reject a whole EndpointSlice write,
so every entry is checked alone: the bad ones are dropped with a reason and the
rest are published. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from directservice.api.reasons import Reason
from directservice.api.spec import Network
from directservice.core.model import Discovery, DiscoveryError, DroppedEntry, Instance

_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LEADING_ZERO_OCTET = re.compile(r"(^|\.)0\d")
# appProtocol must be a Kubernetes qualified name; a scheme that is not one cannot be published.
_QUALIFIED_NAME = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_TRUE_WORDS = frozenset({"true", "yes", "1", "ready", "healthy", "running", "up", "ok"})
_FALSE_WORDS = frozenset({"false", "no", "0", "notready", "unhealthy", "stopped", "down"})

# Keys that commonly hold an instance address in discovery answers, most specific first.
ADDRESS_KEYS = ("ip", "ip_address", "ipAddress", "host_ip", "hostIp", "host", "address", "addr")

# The API server refuses these in EndpointSlices (CVE-2021-25737); they also never
# belong to a model instance in a peered VPC.
_FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
)
# Cloud instance metadata services hand out the node's cloud credentials. 169.254.169.254
# (AWS, GCP, Azure, Huawei Cloud, OpenStack) is link-local anyway; the others sit in ranges
# people do allow: 100.100.100.200 (Alibaba Cloud, in 100.64.0.0/10), fd00:ec2::254 (AWS)
# and fd20:ce::254 (GCP, both in fc00::/7), 168.63.129.16 (Azure's WireServer).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254", "fd20:ce::254",
                 "168.63.129.16")
)  # fmt: skip
METADATA = "a cloud metadata service"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class EntryError(ValueError):
    """One entry is unusable; the message is the reason shown to the user."""


def shown(value: Any, limit: int = 40) -> str:
    """A field value as a message may show it: a scalar's repr, cut to `limit` characters;
    an object or a list by its kind only, since it may hold anything (a token included)."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def coerce_number(value: Any, what: str) -> float:
    """Numbers arrive as int, float or string ("100", "0.5"); anything else is an error."""
    if isinstance(value, bool):
        raise EntryError(f"{what} {shown(value)} is not a number")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            raise EntryError(f"{what} is too large") from None
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise EntryError(f"{what} {shown(value)} is not a number") from None
    else:
        raise EntryError(f"{what} {shown(value)} is not a number")
    if not math.isfinite(number):
        raise EntryError(f"{what} {shown(value)} is not a finite number")
    return number


def parse_port(value: Any) -> int:
    number = coerce_number(value, "port")
    if not number.is_integer() or not 1 <= number <= 65535:
        raise EntryError(f"port {shown(value)} is outside 1-65535")
    return int(number)


def parse_weight(value: Any, default: float = 100.0) -> float:
    if value is None:
        return default
    number = coerce_number(value, "weight")
    if number < 0:
        raise EntryError(f"weight {shown(value)} is negative")
    return number


def parse_ip(value: Any) -> str:
    """A canonical IP literal that the API server accepts in an EndpointSlice."""
    if not isinstance(value, str) or not value.strip():
        raise EntryError(f"address {shown(value)} is not an IP address")
    text = value.strip()
    if "." in text and ":" not in text and _LEADING_ZERO_OCTET.search(text):
        raise EntryError(f"address {shown(text)} has leading zeros")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise EntryError(f"address {shown(text)} is not an IP address") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise EntryError(f"address {shown(text)} is an IPv4-mapped IPv6 address")
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        raise EntryError(f"address {shown(text)} has a zone index")
    label = refused_kind(address)
    if label is not None:
        raise EntryError(f"address {text} is {label}")
    return str(address)


def refused_kind(address: IPAddress) -> str | None:
    """What makes `address` one that is never published (nor, unless the operator allows it,
    connected to for discovery): "loopback", "link-local", ...; None for any other."""
    for label, attribute in _FORBIDDEN:
        if getattr(address, attribute):
            return label
    return METADATA if address in METADATA_ADDRESSES else None


def check_allowed(ip: str, allowed: Sequence[Network]) -> None:
    """Refuse a (canonical) address outside every allowed network."""
    address = ipaddress.ip_address(ip)
    if not any(address.version == net.version and address in net for net in allowed):
        raise EntryError(f"address {ip} is outside spec.allowedCIDRs")


@dataclass(frozen=True)
class DeniedNetwork:
    """A network no DirectService may publish into, whatever its allowedCIDRs say."""

    network: Network
    what: str  # how a dropped entry's reason names it, e.g. "the cluster's Service network"


def check_denied(ip: str, denied: Sequence[DeniedNetwork]) -> None:
    """Refuse a (canonical) address inside one of the operator's denied networks."""
    address = ipaddress.ip_address(ip)
    for net in denied:
        if address.version == net.network.version and address in net.network:
            raise EntryError(f"address {ip} is in {net.what} {net.network}")


def drop_denied(discovery: Discovery, denied: Sequence[DeniedNetwork]) -> Discovery:
    """`discovery` without the instances in denied networks, which join its dropped entries.
    The last-known-good rule applies again, so an answer left with nothing to publish is a
    failed poll (NoValidEntries), never an empty publication."""
    if not denied:
        return discovery
    kept: list[Instance] = []
    dropped = list(discovery.dropped)
    for inst in discovery.instances:
        try:
            check_denied(inst.ip, denied)
        except EntryError as exc:
            dropped.append(DroppedEntry(entry=f"{inst.ip}:{inst.port}", reason=str(exc)))
        else:
            kept.append(inst)
    if len(kept) == len(discovery.instances):
        return discovery
    return accept(kept, dropped)


def parse_ready(value: Any, default: bool = True) -> bool:
    """Readiness as booleans, 0/1 or common status words; anything else is an error, since
    guessing "ready" for an unknown word could send traffic to a dead instance."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower().replace("_", "").replace("-", "")
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise EntryError(f"ready {shown(value)} is not a boolean or a known status")


def parse_scheme(value: Any) -> str | None:
    """A per-instance scheme (http, https, ...), lower-cased, usable as appProtocol."""
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not _QUALIFIED_NAME.match(value.strip()):
        raise EntryError(f"scheme {shown(value)} is not a protocol name like http")
    return value.strip().lower()


def parse_hostname(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > 63 or not _DNS_1123_LABEL.match(value):
        raise EntryError(f"hostname {shown(value)} is not a DNS-1123 label")
    return value


def describe_entry(entry: Mapping[str, Any]) -> str:
    """A short label for a dropped entry; only address-like fields, and only their scalar
    values (an object under "host" may hold anything), never secrets."""
    ip = next((entry[k] for k in ADDRESS_KEYS if k in entry), "?")
    port = entry.get("port", "?")
    parts = [v if isinstance(v, str | int | float) else "?" for v in (ip, port)]
    return f"{parts[0]}:{parts[1]}"[:80]


def merge_duplicates(instances: Iterable[Instance]) -> tuple[Instance, ...]:
    """One endpoint per ip:port. A duplicate keeps the highest weight (serve if any copy
    says so) so that one stale copy with weight 0 cannot take a live instance out."""
    merged: dict[tuple[str, int], Instance] = {}
    for inst in instances:
        key = (inst.ip, inst.port)
        held = merged.get(key)
        if held is None or (inst.serving, inst.weight) > (held.serving, held.weight):
            merged[key] = inst
    return tuple(sorted(merged.values()))


def accept(instances: Iterable[Instance], dropped: Iterable[DroppedEntry]) -> Discovery:
    """Apply the last-known-good rule: only a non-empty list with a serving entry wins."""
    unique = merge_duplicates(instances)
    dropped_entries = tuple(dropped)
    if not unique:
        if dropped_entries:
            raise DiscoveryError(
                Reason.NO_VALID_ENTRIES,
                f"all {len(dropped_entries)} entries were invalid, e.g. "
                f"{dropped_entries[0].entry}: {dropped_entries[0].reason}",
            )
        raise DiscoveryError(Reason.EMPTY_LIST, "discovery returned no instances")
    if not any(inst.serving for inst in unique):
        raise DiscoveryError(Reason.ALL_WEIGHTS_ZERO, f"all {len(unique)} instances have weight 0")
    return Discovery(instances=unique, dropped=dropped_entries)
