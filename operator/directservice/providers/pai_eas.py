"""Alibaba PAI-EAS VPC direct-connect discovery ("upstreams").

GET {endpoint}{path} → {"correlative": [...], "endpoints": {"items": [{ip, port, weight}]}}
The API needs no credentials; it is reachable only from inside the peered VPC.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from directservice.entries import (
    EntryError,
    accept,
    describe_entry,
    parse_hostname,
    parse_ip,
    parse_port,
    parse_weight,
)
from directservice.httpclient import HttpClient
from directservice.model import Discovery, DiscoveryError, DroppedEntry, Instance
from directservice.providers.base import check_status, decode_json
from directservice.spec import PaiEasSpec, Timeouts


def discovery_url(spec: PaiEasSpec) -> str:
    path = spec.path.replace("{serviceName}", quote(spec.service_name, safe=""))
    url = spec.endpoint.rstrip("/") + path
    if spec.internal is not None:
        url += ("&" if "?" in url else "?") + f"internal={str(spec.internal).lower()}"
    return url


def parse_upstreams(payload: Any) -> Discovery:
    """Parse an upstreams answer leniently: a null or missing list is empty, numbers may be
    strings, duplicates merge, and each bad entry is dropped on its own."""
    if not isinstance(payload, Mapping):
        raise DiscoveryError("WrongShape", f"expected a JSON object, got {type(payload).__name__}")
    endpoints = payload.get("endpoints")
    if endpoints is None:
        items: Any = []
    elif isinstance(endpoints, Mapping):
        items = endpoints.get("items") or []
    else:
        raise DiscoveryError("WrongShape", "'endpoints' is not an object")
    if not isinstance(items, list):
        raise DiscoveryError("WrongShape", "'endpoints.items' is not a list")
    instances: list[Instance] = []
    dropped: list[DroppedEntry] = []
    for item in items:
        if not isinstance(item, Mapping):
            dropped.append(DroppedEntry(entry=str(item)[:40], reason="entry is not an object"))
            continue
        try:
            instances.append(
                Instance(
                    ip=parse_ip(item.get("ip")),
                    port=parse_port(item.get("port")),
                    weight=parse_weight(item.get("weight")),
                    hostname=parse_hostname(item.get("hostname")),
                )
            )
        except EntryError as exc:
            dropped.append(DroppedEntry(entry=describe_entry(item), reason=str(exc)))
    return accept(instances, dropped)


class PaiEasProvider:
    kind = "paiEas"

    def __init__(self, spec: PaiEasSpec, timeouts: Timeouts) -> None:
        self.spec = spec
        self.timeouts = timeouts
        self.url = discovery_url(spec)

    async def discover(self, http: HttpClient) -> Discovery:
        resp = await http.request(
            "GET",
            self.url,
            connect_timeout=self.timeouts.connect,
            read_timeout=self.timeouts.read,
            headers={"Accept": "application/json"},
        )
        check_status(resp)
        return parse_upstreams(decode_json(resp))
