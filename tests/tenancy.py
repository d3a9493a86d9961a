"""Helpers for the tenancy tests: objects of a DirectService's name made by someone else,
reads that show whether they were touched, and the operator's own view filled as its
watches would fill it."""

from __future__ import annotations

import urllib.error
import urllib.parse
from collections import defaultdict
from typing import Any

from devenv.controlplane import ControlPlane
from directservice.api.names import SERVICE_SELECTOR
from directservice.controller.handlers import WATCHED_SLICES, IndexView
from directservice.publish.render import observe_service, observe_slice

SLICES = "/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices"
SERVICES = "/api/v1/namespaces/{ns}/services"
SERVICE_NAME = "kubernetes.io/service-name"
SLICE_MANAGER = "endpointslice.kubernetes.io/managed-by"
OUR_SERVICE_LABELS = {"app.kubernetes.io/managed-by": "directservice.io"}


def our_slice_labels(service: str) -> dict[str, str]:
    return {SERVICE_NAME: service, SLICE_MANAGER: "directservice.io"}


class TenantView(IndexView):
    """The operator's IndexView over what its watches would have delivered by now: the
    objects its label selectors list, classified as its kopf indexes classify them."""

    def __init__(self) -> None:
        super().__init__({}, {})  # type: ignore[arg-type]

    def deliver(self, cp: ControlPlane, namespace: str) -> None:
        slices: dict[tuple[str, str], list[Any]] = defaultdict(list)
        services: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for obj in listed(cp, SLICES.format(ns=namespace), WATCHED_SLICES):
            seen = observe_slice(obj)
            if seen is not None:
                slices[(namespace, obj["metadata"]["labels"][SERVICE_NAME])].append(seen)
        for obj in listed(cp, SERVICES.format(ns=namespace), SERVICE_SELECTOR):
            services[(namespace, obj["metadata"]["name"])].append(observe_service(obj))
        self._slices, self._services = slices, services  # type: ignore[assignment]


def listed(cp: ControlPlane, path: str, selector: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"labelSelector": selector})
    items: list[dict[str, Any]] = cp.request("GET", f"{path}?{query}")["items"]
    return items


def ref(name: str, uid: str, kind: str = "DirectService") -> dict[str, Any]:
    """A controller ownerReference (the API server does not check that the owner exists)."""
    version = "directservice.io/v1alpha1" if kind == "DirectService" else "apps/v1"
    return {"apiVersion": version, "kind": kind, "name": name, "uid": uid, "controller": True}


def _meta(ns: str, name: str, labels: dict[str, str], owner: dict[str, Any] | None) -> Any:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    return meta


def make_slice(
    cp: ControlPlane,
    ns: str,
    name: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None = None,
    ip: str = "192.168.77.7",
) -> dict[str, Any]:
    """An EndpointSlice someone else made, as the API server answered its creation."""
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(ns, name, labels, owner),
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    created: dict[str, Any] = cp.request("POST", SLICES.format(ns=ns), body)
    return created


def make_service(
    cp: ControlPlane,
    ns: str,
    name: str,
    labels: dict[str, str],
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Service with a selector that someone else made."""
    body = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ns, name, labels, owner),
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "web", "port": 80}]},
    }
    created: dict[str, Any] = cp.request("POST", SERVICES.format(ns=ns), body)
    return created


def slices_by_name(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    """Every slice in `ns`, each as a GET answers it (a list leaves out apiVersion and kind),
    so a slice equal to its creation's answer was not touched since."""
    names = [s["metadata"]["name"] for s in cp.request("GET", SLICES.format(ns=ns))["items"]]
    found = {}
    for name in names:
        try:
            found[name] = cp.request("GET", f"{SLICES.format(ns=ns)}/{name}")
        except urllib.error.HTTPError as err:
            if err.code != 404:  # deleted between the list and the read
                raise
    return found


def service_now(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = cp.request("GET", f"{SERVICES.format(ns=ns)}/{name}")
    return found
