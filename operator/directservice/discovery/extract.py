"""Reading instance lists out of JSON answers whose shape we know only roughly.

Two modes share one code path:
- explicit: the user gave dot paths (spec fields), which are followed exactly;
- guessing: for APIs whose answer shape is unpublished (ModelArts host_endpoints), the list
  of instances is searched under common keys and each entry's address, port and scheme are
  read from common field names.
Every entry is validated on its own (entries.py), so one odd entry never hides the others.
Pure: no I/O.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from yarl import URL

from directservice.api.reasons import Reason
from directservice.api.spec import Network
from directservice.core.entries import (
    ADDRESS_KEYS,
    EntryError,
    accept,
    check_allowed,
    describe_entry,
    parse_hostname,
    parse_ip,
    parse_port,
    parse_ready,
    parse_scheme,
    parse_weight,
)
from directservice.core.model import Discovery, DiscoveryError, DroppedEntry, Instance
from directservice.discovery.fields import FieldPaths


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# Where an instance list is most likely to sit, checked first and in this order.
LIST_KEYS = (
    "host_endpoints",
    "hostEndpoints",
    "endpoints",
    "instances",
    "items",
    "hosts",
    "upstreams",
    "nodes",
    "data",
    "result",
    "list",
)
PORT_KEYS = ("port", "host_port", "hostPort")
SCHEME_KEYS = ("schema", "scheme", "protocol")
URL_KEYS = ("url", "endpoint", "uri")
MAX_SEARCH_DEPTH = 4


def get_path(doc: Any, path: str) -> Any:
    """Follow a dot path ("data.endpoints", "items.0.ip"); MISSING when it leads nowhere.
    Numeric segments index lists, so a path can pick one element."""
    node = doc
    for segment in path.split("."):
        if isinstance(node, Mapping) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return MISSING
    return node


def _has_address(item: Any, ip_path: str | None) -> bool:
    if not isinstance(item, Mapping):
        return False
    if ip_path is not None:  # the user said where the address is: look there only
        return get_path(item, ip_path) is not MISSING
    return any(k in item for k in (*ADDRESS_KEYS, *URL_KEYS))


def find_instance_list(doc: Any, ip_path: str | None = None) -> list[Any] | None:
    """The most plausible list of instances in `doc`, breadth first (shallow wins), preferred
    keys before others; with `ip_path`, a list qualifies when its objects have that path.
    An empty or null list under a preferred key means "no instances" if nothing better turns
    up; None means no candidate at all (a wrong shape)."""

    def _instance_list(value: Any) -> bool:
        return isinstance(value, list) and any(_has_address(item, ip_path) for item in value)

    if isinstance(doc, list):
        return doc if not doc or _instance_list(doc) else None
    empty_seen = False
    queue: deque[tuple[Any, int]] = deque([(doc, 0)])
    while queue:
        node, depth = queue.popleft()
        if not isinstance(node, Mapping):
            continue
        keys = [k for k in LIST_KEYS if k in node]
        keys += sorted(str(k) for k in node if k not in LIST_KEYS)
        for key in keys:
            child = node[key]
            if _instance_list(child):
                return list(child)
            if key in LIST_KEYS and child in (None, []):
                empty_seen = True
            elif isinstance(child, Mapping) and depth < MAX_SEARCH_DEPTH:
                queue.append((child, depth + 1))
    return [] if empty_seen else None


def locate_list(payload: Any, list_path: str | None, ip_path: str | None = None) -> list[Any]:
    """The entry list: at `list_path` ("" is the top level) or, when None, searched for."""
    if list_path is None:
        found = find_instance_list(payload, ip_path)
        if found is None:
            raise DiscoveryError(
                Reason.WRONG_SHAPE,
                "no list of instances (objects with an ip or host field) found in the answer; "
                "set fields.list to its dot path",
            )
        return found
    value = payload if list_path == "" else get_path(payload, list_path)
    if value is MISSING:
        raise DiscoveryError(Reason.WRONG_SHAPE, f"the answer has nothing at {list_path!r}")
    if value is None:
        return []
    if not isinstance(value, list):
        where = repr(list_path) if list_path else "the top level"
        raise DiscoveryError(
            Reason.WRONG_SHAPE, f"{where} holds a {type(value).__name__}, not a list"
        )
    return value


def _read(item: Mapping[str, Any], path: str | None, candidates: Sequence[str]) -> Any:
    if path is not None:
        value = get_path(item, path)
        return None if value is MISSING else value
    return next((item[k] for k in candidates if k in item), None)


def split_address(text: str) -> tuple[str, str | None, str | None]:
    """("10.0.0.1", "8080", "http") from "http://10.0.0.1:8080", "10.0.0.1:8080", "[fd00::1]:80"."""
    text = text.strip()
    if "://" in text:
        try:
            url = URL(text)
        except ValueError:
            return text, None, None
        port = str(url.explicit_port) if url.explicit_port is not None else None
        return (url.host or text), port, (url.scheme or None)
    if text.startswith("[") and "]:" in text:
        host, _, port = text[1:].partition("]:")
        return host, port, None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port, None
    return text, None, None


def build_instance(
    item: Mapping[str, Any], fields: FieldPaths, allowed: Sequence[Network], *, guess: bool
) -> Instance:
    """One validated instance from one entry, or EntryError with the reason."""
    raw_ip = _read(item, fields.ip, (*ADDRESS_KEYS, *URL_KEYS) if guess else ())
    raw_port = _read(item, fields.port, PORT_KEYS if guess else ())
    raw_scheme = _read(item, fields.scheme, SCHEME_KEYS if guess else ())
    if guess and isinstance(raw_ip, str):
        host, embedded_port, embedded_scheme = split_address(raw_ip)
        if raw_port is None and embedded_port is not None:
            raw_ip, raw_port = host, embedded_port
        elif "://" in raw_ip:
            raw_ip = host
        raw_scheme = raw_scheme if raw_scheme is not None else embedded_scheme
    if raw_ip is None:
        raise EntryError("entry has no address field")
    ip = parse_ip(raw_ip)
    check_allowed(ip, allowed)
    return Instance(
        ip=ip,
        port=parse_port(raw_port),
        weight=parse_weight(_read(item, fields.weight, ("weight",) if guess else ())),
        ready=parse_ready(_read(item, fields.ready, ())),
        hostname=parse_hostname(_read(item, fields.hostname, ())),
        scheme=parse_scheme(raw_scheme),
    )


def _label(item: Mapping[str, Any], fields: FieldPaths, guess: bool) -> str:
    """ip:port of a dropped entry as the user would recognise it; only the address and port
    fields are ever shown (never other fields, which might hold secrets)."""
    if guess and fields.ip is None and fields.port is None:
        return describe_entry(item)
    ip = _read(item, fields.ip, (*ADDRESS_KEYS, *URL_KEYS) if guess else ())
    port = _read(item, fields.port, PORT_KEYS if guess else ())
    shown = [v if isinstance(v, str | int | float) else "?" for v in (ip, port)]
    return f"{shown[0]}:{shown[1]}"[:80]


def parse_entries(
    items: Iterable[Any], fields: FieldPaths, allowed: Sequence[Network], *, guess: bool
) -> Discovery:
    """Validate each entry alone, then apply the last-known-good rule (entries.accept)."""
    instances: list[Instance] = []
    dropped: list[DroppedEntry] = []
    for item in items:
        if not isinstance(item, Mapping):
            # A nested list is shown by kind only: it may hold whole objects, tokens included.
            label = "a list" if isinstance(item, list) else str(item)[:40]
            dropped.append(DroppedEntry(entry=label, reason="entry is not an object"))
            continue
        try:
            instances.append(build_instance(item, fields, allowed, guess=guess))
        except EntryError as exc:
            dropped.append(DroppedEntry(entry=_label(item, fields, guess), reason=str(exc)))
    return accept(instances, dropped)
