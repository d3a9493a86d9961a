"""The benchmark's slice watch, extended with what DNS answers: the ready endpoints.

bench's SliceWatcher keeps every address of a slice (terminating ones too); endpoint loss is
about ready endpoints, so this subclass converts events itself and keeps, per service, the
timeline of its ready set (a new entry only when the set changes). The list-then-watch
loop is the benchmark's; only the event conversion differs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from bench.cluster import SLICE_SELECTOR, SliceEvent, SliceWatcher
from directservice.api.names import LABEL_SERVICE_NAME
from soak.book import Endpoints, Published

ServiceKey = tuple[str, str]  # (namespace, service)


@dataclass(frozen=True)
class ReadySliceEvent(SliceEvent):
    ready: Endpoints = frozenset()  # "ip:port" of the endpoints CoreDNS answers with


def _is_ready(endpoint: Mapping[str, Any]) -> bool:
    # The EndpointSlice API: an unset `ready` is to be read as ready.
    return (endpoint.get("conditions") or {}).get("ready") is not False


def ready_event(kind: str, obj: Mapping[str, Any], at: float) -> ReadySliceEvent:
    meta = obj.get("metadata") or {}
    endpoints = obj.get("endpoints") or []
    ports = [p.get("port") for p in obj.get("ports") or []]
    return ReadySliceEvent(
        at=at,
        type=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        service=str((meta.get("labels") or {}).get(LABEL_SERVICE_NAME, "")),
        addresses=frozenset(a for ep in endpoints for a in ep.get("addresses") or []),
        ready=frozenset(
            f"{address}:{port}"
            for ep in endpoints
            if _is_ready(ep)
            for address in ep.get("addresses") or []
            for port in ports
        ),
    )


class ReadySliceWatcher(SliceWatcher):
    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(api)
        self._members: dict[ServiceKey, set[str]] = {}
        self._timelines: dict[ServiceKey, list[Published]] = {}
        self.relists = 0  # lists after the first: events in between were not seen

    def _list(self) -> str:
        resp = self._api.list_endpoint_slice_for_all_namespaces(
            label_selector=SLICE_SELECTOR, _preload_content=False
        )
        body = json.loads(resp.data)
        now = time.time()
        with self._cond:
            if self._thread is not None:
                self.relists += 1
            self.state = {}
            self._members = {}
            for obj in body["items"]:
                event = ready_event("LISTED", obj, now)
                self.state[(event.namespace, event.name)] = event
                self._members.setdefault((event.namespace, event.service), set()).add(event.name)
            for key in {*self._members, *self._timelines}:
                self._note(key, now)
            self._cond.notify_all()
        return str(body["metadata"]["resourceVersion"])

    def _event(self, kind: str, obj: dict[str, Any], at: float) -> SliceEvent:
        return ready_event(kind, obj, at)

    def _record(self, event: SliceEvent) -> None:
        with self._cond:  # re-entrant: the base class takes it again
            super()._record(event)
            key = (event.namespace, event.service)
            members = self._members.setdefault(key, set())
            if event.type == "DELETED":
                members.discard(event.name)
            elif event.type in ("ADDED", "MODIFIED"):
                members.add(event.name)
            self._note(key, event.at)

    def _note(self, key: ServiceKey, at: float) -> None:
        ready: set[str] = set()
        for name in self._members.get(key, ()):
            event = self.state.get((key[0], name))
            if isinstance(event, ReadySliceEvent):
                ready |= event.ready
        timeline = self._timelines.setdefault(key, [])
        if not timeline or timeline[-1].ready != ready:
            timeline.append(Published(at, frozenset(ready)))

    def timelines(self, namespace: str) -> dict[str, tuple[Published, ...]]:
        """Per service of `namespace`, its ready sets in the order the watch saw them."""
        with self._cond:
            return {svc: tuple(t) for (ns, svc), t in self._timelines.items() if ns == namespace}
