"""Helpers for the end-to-end tests that drive DirectServices through the operator process.

Reads go straight to the API server (ControlPlane.request), which is much faster than a
kubectl process per probe; edits use kubectl's merge patches. Every DirectService made here
polls every second with 1 s timeouts, so a test sees several polls in a few seconds.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
from collections.abc import Mapping
from typing import Any

from clusterhelpers import condition, eventually
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess

DSVC_API = "/apis/directservice.io/v1alpha1"
HEALTHY = "DiscoveryHealthy"
FAST = {"pollInterval": "1s", "timeouts": {"connect": "1s", "read": "1s"}}


def directservice(
    namespace: str, name: str, provider: Mapping[str, Any], **spec: Any
) -> dict[str, Any]:
    """A DirectService polling every second; `spec` adds or overrides spec fields."""
    return {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": dict(provider), "port": {"name": "http"}, **FAST, **spec},
    }


def pai_eas(endpoint: str, service: str) -> dict[str, Any]:
    return {"paiEas": {"endpoint": endpoint, "serviceName": service}}


def create(cp: ControlPlane, obj: Mapping[str, Any]) -> None:
    """POST a DirectService or a Secret (the kinds these tests make)."""
    ns = obj["metadata"]["namespace"]
    if obj["kind"] == "Secret":
        cp.request("POST", f"/api/v1/namespaces/{ns}/secrets", obj)
    else:
        cp.request("POST", f"{DSVC_API}/namespaces/{ns}/directservices", obj)


def secret(namespace: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": dict(data),
    }


def patch(cp: ControlPlane, kind: str, namespace: str, name: str, body: Any) -> None:
    cp.kubectl("patch", kind, name, "-n", namespace, "--type", "merge", "-p", json.dumps(body))


def get_dsvc(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = cp.request(
        "GET", f"{DSVC_API}/namespaces/{namespace}/directservices/{name}"
    )
    return result


def all_dsvcs(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.request(
        "GET", f"{DSVC_API}/namespaces/{namespace}/directservices"
    )["items"]
    return items


def service(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = cp.request(
            "GET", f"/api/v1/namespaces/{namespace}/services/{name}"
        )
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    return result


def slices(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    """The EndpointSlices of Service `name`, full objects, sorted by name."""
    selector = urllib.parse.quote(f"kubernetes.io/service-name={name}")
    items: list[dict[str, Any]] = cp.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices?labelSelector={selector}",
    )["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def events(cp: ControlPlane, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    """Events in `namespace` (about DirectService `name` only, when given)."""
    query = ""
    if name is not None:
        query = "?fieldSelector=" + urllib.parse.quote(f"involvedObject.name={name}")
    items: list[dict[str, Any]] = cp.request(
        "GET", f"/api/v1/namespaces/{namespace}/events{query}"
    )["items"]
    return items


def events_with(
    cp: ControlPlane, namespace: str, name: str, reason: str, kind: str | None = None
) -> list[dict[str, Any]]:
    return [
        e
        for e in events(cp, namespace, name)
        if e["reason"] == reason and (kind is None or e["type"] == kind)
    ]


def health(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return condition(get_dsvc(cp, namespace, name), HEALTHY)


def wait_health(
    cp: ControlPlane,
    namespace: str,
    name: str,
    status: str,
    reason: str | None = None,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """The DirectService once DiscoveryHealthy has `status` (and `reason`, if given)."""

    def probe() -> dict[str, Any] | None:
        dsvc = get_dsvc(cp, namespace, name)
        cond = condition(dsvc, HEALTHY)
        ok = cond.get("status") == status and (reason is None or cond.get("reason") == reason)
        return dsvc if ok else None

    what = f"{namespace}/{name} {HEALTHY}={status}" + (f" ({reason})" if reason else "")
    return eventually(what, probe, timeout)


def wait_published(
    cp: ControlPlane, namespace: str, name: str, want: set[tuple[str, int]], timeout: float = 20.0
) -> list[dict[str, Any]]:
    """The slices once they hold exactly the (ip, port) endpoints in `want`."""

    def probe() -> list[dict[str, Any]] | None:
        current = slices(cp, namespace, name)
        return current if addresses(current) == want else None

    return eventually(f"{namespace}/{name} publishing {sorted(want)}", probe, timeout)


def addresses(slice_list: list[dict[str, Any]]) -> set[tuple[str, int]]:
    """(ip, port) of every endpoint in the slices."""
    return {
        (address, s["ports"][0]["port"])
        for s in slice_list
        for endpoint in s.get("endpoints") or []
        for address in endpoint["addresses"]
    }


def endpoint_details(slice_list: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per address: port, appProtocol, ready and hostname, as published."""
    out: dict[str, dict[str, Any]] = {}
    for s in slice_list:
        port = s["ports"][0]
        for endpoint in s.get("endpoints") or []:
            for address in endpoint["addresses"]:
                out[address] = {
                    "port": port["port"],
                    "appProtocol": port.get("appProtocol"),
                    "ready": endpoint["conditions"]["ready"],
                    "hostname": endpoint.get("hostname"),
                }
    return out


def discovery_count(operator: OperatorProcess, provider: str, result: str) -> float:
    """directservice_discovery_requests_total{provider, result} as the operator exports it."""
    pattern = (
        rf'^directservice_discovery_requests_total\{{provider="{re.escape(provider)}",'
        rf'result="{re.escape(result)}"\}} (\S+)$'
    )
    match = re.search(pattern, operator.metrics_text(), re.MULTILINE)
    return float(match.group(1)) if match else 0.0
