"""The bench's side of the cluster: bulk DirectService creation, API server request counters,
and a timestamping EndpointSlice watch in a thread."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from bench.stats import RequestKey, request_counts
from devenv.controlplane import ControlPlane
from directservice.api.names import (
    GROUP,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    PLURAL,
)
from directservice.api.names import VERSION as API_VERSION

SLICE_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def dsvc_manifest(
    name: str, namespace: str, endpoint: str, eas_service: str, interval: str
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "DirectService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "provider": {"paiEas": {"endpoint": endpoint, "serviceName": eas_service}},
            "pollInterval": interval,
            "port": {"name": "http", "appProtocol": "http"},
            "timeouts": {"connect": "1s", "read": "5s"},
        },
    }


def ensure_namespace(cp: ControlPlane, name: str) -> None:
    try:
        cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise


def create_all(api: client.ApiClient, docs: Iterable[Mapping[str, Any]], workers: int = 8) -> int:
    """Create DirectServices from a thread pool; existing ones are left alone. Returns how
    many were created."""
    custom: Any = client.CustomObjectsApi(api)

    def create(doc: Mapping[str, Any]) -> int:
        try:
            custom.create_namespaced_custom_object(
                GROUP, API_VERSION, doc["metadata"]["namespace"], PLURAL, doc,
                _preload_content=False,
            )  # fmt: skip
        except ApiException as exc:
            if exc.status == 409:
                return 0
            raise
        return 1

    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(create, list(docs)))


def delete_dsvc(api: client.ApiClient, namespace: str, name: str) -> None:
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            GROUP, API_VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if exc.status != 404:
            raise


def list_dsvc(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    custom: Any = client.CustomObjectsApi(api)
    resp = custom.list_namespaced_custom_object(
        GROUP, API_VERSION, namespace, PLURAL, _preload_content=False
    )
    items: list[dict[str, Any]] = json.loads(resp.data)["items"]
    return items


def healthy(dsvc: Mapping[str, Any], total: int) -> bool:
    status = dsvc.get("status") or {}
    conditions = status.get("conditions") or []
    ok = any(c.get("type") == "DiscoveryHealthy" and c.get("status") == "True" for c in conditions)
    return ok and status.get("totalEndpoints") == total


KOPF_FINALIZER = f"{GROUP}/cleanup"


def kopf_done(dsvc: Mapping[str, Any]) -> bool:
    """kopf has added its finalizer (its one PATCH per object; what it handled stays in
    memory)."""
    meta = dsvc.get("metadata") or {}
    return KOPF_FINALIZER in (meta.get("finalizers") or [])


def request_snapshot(cp: ControlPlane) -> Counter[RequestKey]:
    """apiserver_request_total from the API server's /metrics (as admin)."""
    text = cp.request("GET", "/metrics", timeout=30)
    return request_counts(text if isinstance(text, str) else json.dumps(text))


# -- the watch -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceEvent:
    at: float  # time.time() when the bench read the event
    type: str  # ADDED, MODIFIED, DELETED
    namespace: str
    name: str
    service: str
    addresses: frozenset[str]


def _event_of(kind: str, obj: Mapping[str, Any], at: float) -> SliceEvent:
    meta = obj.get("metadata") or {}
    addresses = frozenset(
        address for ep in obj.get("endpoints") or [] for address in ep.get("addresses") or []
    )
    return SliceEvent(
        at=at,
        type=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        service=str((meta.get("labels") or {}).get(LABEL_SERVICE_NAME, "")),
        addresses=addresses,
    )


class SliceWatcher:
    """Lists, then watches, every operator-managed EndpointSlice; keeps the current state and
    every event with the wall time the bench received it."""

    def __init__(self, api: client.ApiClient) -> None:
        self._api: Any = client.DiscoveryV1Api(api)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.events: list[SliceEvent] = []
        self.state: dict[tuple[str, str], SliceEvent] = {}
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SliceWatcher:
        version = self._list()
        self._thread = threading.Thread(
            target=self._run, args=(version,), name="slice-watch", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> str:
        resp = self._api.list_endpoint_slice_for_all_namespaces(
            label_selector=SLICE_SELECTOR, _preload_content=False
        )
        body = json.loads(resp.data)
        now = time.time()
        with self._cond:
            self.state = {}
            for obj in body["items"]:
                event = _event_of("LISTED", obj, now)
                self.state[(event.namespace, event.name)] = event
            self._cond.notify_all()
        return str(body["metadata"]["resourceVersion"])

    def _run(self, version: str) -> None:
        while not self._stop.is_set():
            try:
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._api.list_endpoint_slice_for_all_namespaces,
                    label_selector=SLICE_SELECTOR,
                    resource_version=version,
                    timeout_seconds=30,
                    deserialize=False,
                )
                for raw in stream:
                    at = time.time()
                    obj = raw.get("object") or raw.get("raw_object") or {}
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    self._record(self._event(str(raw["type"]), obj, at))
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # too old: list again
                    version = self._list()
                    continue
                self.error = exc
                time.sleep(1)
            except Exception as exc:  # connection trouble: note it and resume
                self.error = exc
                time.sleep(0.5)

    def _event(self, kind: str, obj: dict[str, Any], at: float) -> SliceEvent:
        """One watch event as recorded (a subclass may record more of the slice)."""
        return _event_of(kind, obj, at)

    def _record(self, event: SliceEvent) -> None:
        with self._cond:
            self.events.append(event)
            key = (event.namespace, event.name)
            if event.type == "DELETED":
                self.state.pop(key, None)
            elif event.type in ("ADDED", "MODIFIED"):
                self.state[key] = event
            self._cond.notify_all()

    # -- queries ---------------------------------------------------------------------------

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def since(self, mark: int) -> list[SliceEvent]:
        with self._cond:
            return self.events[mark:]

    def slices_of(self, namespace: str, service: str) -> dict[str, frozenset[str]]:
        with self._cond:
            return {
                e.name: e.addresses
                for e in self.state.values()
                if e.namespace == namespace and e.service == service
            }

    def services_with(self, namespace: str, addresses: int) -> int:
        """Services in `namespace` whose slices hold exactly `addresses` addresses in all."""
        totals: Counter[str] = Counter()
        with self._cond:
            for event in self.state.values():
                if event.namespace == namespace:
                    totals[event.service] += len(event.addresses)
        return sum(1 for total in totals.values() if total == addresses)

    def wait_event(
        self, match: Callable[[SliceEvent], bool], mark: int, timeout: float
    ) -> SliceEvent | None:
        """The first event at or after `mark` that matches, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            index = mark
            while True:
                while index < len(self.events):
                    if match(self.events[index]):
                        return self.events[index]
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_state(self, done: Callable[[SliceWatcher], bool], timeout: float) -> float | None:
        """Wait until `done(self)` holds; returns the receive time of the event that made it
        hold (now if it already did), None on timeout. `done` runs under the watcher's lock."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if done(self):
                return time.time()
            while True:
                if done(self):
                    return self.events[-1].at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
