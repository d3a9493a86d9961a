"""Pure rendering between domain types and Kubernetes objects (plain dicts).

build_* turn desired state into API bodies; read_* turn what the API server holds
back into domain types, so the planner compares like with like; observe_* also tell
objects of a DirectService's name that it does not own (Foreign) from its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from directservice.api.names import (
    ANNOTATION_WEIGHTS,
    GROUP,
    KIND,
    LABEL_APP_MANAGED_BY,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    MANAGED_BY,
    Owner,
)
from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    EndpointState,
    PublishedSlice,
    ServiceShape,
    SliceContent,
    SliceKey,
)

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"


@dataclass(frozen=True)
class Foreign:
    """A Service or EndpointSlice of a DirectService's name (a Service of that name, a slice
    labelled with it) that the DirectService does not own: never modified or deleted."""

    kind: str  # SERVICE or ENDPOINT_SLICE
    namespace: str
    name: str
    service: str  # the DirectService it stands in the way of, or serves under the name of
    why: str  # who owns it, e.g. "is owned by DirectService team-b/other"
    labelled: bool = False  # carries our managed-by label: a delete by label would reach it

    def describe(self) -> str:
        text = f"{self.kind} {self.name} {self.why}"
        if self.kind == ENDPOINT_SLICE:  # the headless Service's DNS merges every such slice
            text += f"; CoreDNS serves its addresses under {self.service}.{self.namespace}.svc too"
        return text


def format_weight(weight: float) -> int | float:
    return int(weight) if float(weight).is_integer() else weight


def build_service(owner: Owner, shape: ServiceShape) -> dict[str, Any]:
    """A selector-less headless Service: no selector so the built-in controller leaves
    its EndpointSlices alone; clusterIP None so DNS returns instance addresses."""
    spec: dict[str, Any] = {"clusterIP": "None", "type": "ClusterIP"}
    if shape.port is not None:
        port: dict[str, Any] = {"name": shape.port_name, "port": shape.port, "protocol": "TCP"}
        if shape.app_protocol:
            port["appProtocol"] = shape.app_protocol
        spec["ports"] = [port]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {LABEL_APP_MANAGED_BY: MANAGED_BY},
            "ownerReferences": [owner.reference()],
        },
        "spec": spec,
    }


def read_service_shape(obj: Mapping[str, Any]) -> ServiceShape | None:
    """The shape of a Service we manage, or None if it is not ours (see not_ours)."""
    meta = obj.get("metadata") or {}
    if not_ours(meta, str(meta.get("name", "")), LABEL_APP_MANAGED_BY) is not None:
        return None
    return _service_shape(obj, meta)


def _service_shape(obj: Mapping[str, Any], meta: Mapping[str, Any]) -> ServiceShape:
    ports = (obj.get("spec") or {}).get("ports") or []
    port = ports[0] if len(ports) == 1 else {}
    return ServiceShape(
        port_name=str(port.get("name", "")),
        port=port.get("port"),
        app_protocol=port.get("appProtocol"),
        owner_uid=_owner_uid(meta),
    )


def build_endpoint_slice(owner: Owner, desired: DesiredSlice) -> dict[str, Any]:
    content = desired.content
    port: dict[str, Any] = {"name": content.port_name, "port": content.key.port, "protocol": "TCP"}
    if content.key.app_protocol:
        port["appProtocol"] = content.key.app_protocol
    endpoints = []
    weights: dict[str, int | float] = {}
    for ip, state in content.endpoints:
        endpoint: dict[str, Any] = {
            "addresses": [ip],
            "conditions": {
                "ready": state.ready,
                "serving": state.serving,
                "terminating": state.terminating,
            },
        }
        if state.hostname:
            endpoint["hostname"] = state.hostname
        endpoints.append(endpoint)
        weights[ip] = format_weight(state.weight)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": desired.name,
            "namespace": owner.namespace,
            "labels": {LABEL_SERVICE_NAME: owner.name, LABEL_MANAGED_BY: MANAGED_BY},
            # Weights have no place in the EndpointSlice API; keep them visible here.
            "annotations": {ANNOTATION_WEIGHTS: json.dumps(weights, separators=(",", ":"))},
            "ownerReferences": [owner.reference()],
        },
        "addressType": content.key.family.value,
        "endpoints": endpoints,
        "ports": [port],
    }


def read_endpoint_slice(obj: Mapping[str, Any]) -> PublishedSlice:
    """What a published slice holds. A slice we cannot read as ours gets content None,
    which makes the planner rewrite or remove it rather than guess."""
    meta = obj.get("metadata") or {}
    published = PublishedSlice(
        name=str(meta.get("name", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        content=None,
        owner_uid=_owner_uid(meta),
    )
    try:
        content = _read_content(obj, meta)
    except (AttributeError, KeyError, TypeError, ValueError):
        return published
    return PublishedSlice(
        name=published.name,
        resource_version=published.resource_version,
        content=content,
        owner_uid=published.owner_uid,
    )


def _read_content(obj: Mapping[str, Any], meta: Mapping[str, Any]) -> SliceContent | None:
    ports = obj.get("ports") or []
    if len(ports) != 1 or ports[0].get("port") is None:
        return None
    port = ports[0]
    weights = json.loads((meta.get("annotations") or {}).get(ANNOTATION_WEIGHTS, "{}"))
    endpoints: list[tuple[str, EndpointState]] = []
    for endpoint in obj.get("endpoints") or []:
        addresses = endpoint.get("addresses") or []
        if len(addresses) != 1:
            return None
        conditions = endpoint.get("conditions") or {}
        # The API's defaults: ready and serving unset mean true, terminating unset false.
        ready = conditions.get("ready")
        serving = conditions.get("serving")
        ip = addresses[0]
        state = EndpointState(
            ready=True if ready is None else bool(ready),
            weight=float(weights.get(ip, 100)),
            hostname=endpoint.get("hostname"),
            serving=True if serving is None else bool(serving),
            terminating=bool(conditions.get("terminating")),
        )
        endpoints.append((ip, state))
    key = SliceKey(
        family=AddressFamily(obj["addressType"]),
        port=int(port["port"]),
        app_protocol=port.get("appProtocol"),
    )
    return SliceContent(key=key, port_name=str(port.get("name", "")), endpoints=tuple(endpoints))


def observe_service(obj: Mapping[str, Any]) -> ServiceShape | Foreign:
    """A Service as a DirectService of its name sees it: its own (shape), or in its way."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    verdict = not_ours(meta, name, LABEL_APP_MANAGED_BY)
    if verdict is None:
        return _service_shape(obj, meta)
    why, labelled = verdict
    return Foreign(SERVICE, str(meta.get("namespace", "")), name, name, why, labelled)


def observe_slice(obj: Mapping[str, Any]) -> PublishedSlice | Foreign | None:
    """A slice as the DirectService named by its service-name label sees it: its own, or
    one that serves under its name without being its own. None: the slice names no Service."""
    meta = obj.get("metadata") or {}
    service = (meta.get("labels") or {}).get(LABEL_SERVICE_NAME)
    if not service:
        return None
    verdict = not_ours(meta, str(service), LABEL_MANAGED_BY)
    if verdict is None:
        return read_endpoint_slice(obj)
    why, labelled = verdict
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    return Foreign(ENDPOINT_SLICE, namespace, name, str(service), why, labelled)


def not_ours(meta: Mapping[str, Any], service: str, label: str) -> tuple[str, bool] | None:
    """Why an object is not DirectService `service`'s to write (and whether it carries our
    managed-by `label`), or None when it is: managed by directservice.io and controlled by a
    DirectService of that name. The UID may be an earlier one's, so a DirectService deleted
    and created again adopts what it left (without a garbage collector, it stays)."""
    namespace = str(meta.get("namespace", ""))
    owner = _controller(meta)
    owned_by = f"{owner.get('kind')} {namespace}/{owner.get('name')}" if owner else ""
    manager = (meta.get("labels") or {}).get(label)
    if manager != MANAGED_BY:
        detail = f"owned by {owned_by}" if owner else f"managed by {manager}" if manager else ""
        return "is not managed by directservice.io" + (f" ({detail})" if detail else ""), False
    if owner is None:
        return "is labelled as managed by directservice.io, but no DirectService controls it", True
    group = str(owner.get("apiVersion", "")).split("/")[0]
    if owner.get("kind") == KIND and group == GROUP and owner.get("name") == service:
        return None
    return f"is owned by {owned_by}", True


def _controller(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, Mapping) and ref.get("controller"):
            return ref
    return None


def _owner_uid(meta: Mapping[str, Any]) -> str | None:
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("controller"):
            return str(ref.get("uid"))
    return None
