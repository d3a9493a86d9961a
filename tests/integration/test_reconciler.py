"""Reconciler.poll_once against the real API server and a real DirectService object.

The provider is `static` (no HTTP). Status patches and Events go to the API server; the
view is plain memory holding what the test says the watches delivered. Faults are injected
by monkeypatching our own code, never the API.

The module has a control plane of its own: in a full run the session-wide e2e operator
watches every namespace of the shared one, and would reconcile these DirectServices too.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.controller.reconciler import Reconciler, Shared
from directservice.core.model import Discovery
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.static import StaticProvider
from directservice.obs import metrics
from directservice.publish.apiclient import ApiEndpoint
from directservice.publish.publisher import Publisher
from directservice.publish.writer import KubeWriter
from support import WatchView

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api_endpoint(own_cluster: ControlPlane) -> ApiEndpoint:
    return own_cluster.api_endpoint()


@pytest.fixture
def namespace(own_cluster: ControlPlane) -> str:
    name = f"rec-{secrets.token_hex(4)}"
    own_cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


NAME = "scorer"
DSVC_API = "/apis/directservice.io/v1alpha1"
HEALTHY = "DiscoveryHealthy"
INSTANCES = [{"ip": "10.20.0.11", "port": 9000}, {"ip": "10.20.0.12", "port": 9000}]
SPEC: dict[str, Any] = {
    "provider": {"static": {"instances": INSTANCES}},
    "pollInterval": "1s",
    "port": {"name": "http"},
}


def api_slices(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.request(
        "GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    )["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def published_ips(cp: ControlPlane, namespace: str) -> set[str]:
    """Addresses of the published endpoints that discovery still lists (not draining)."""
    return {
        a
        for s in api_slices(cp, namespace)
        for e in s["endpoints"] or []
        if not e["conditions"].get("terminating")
        for a in e["addresses"]
    }


def create_dsvc(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    obj = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": copy.deepcopy(SPEC),
    }
    created: dict[str, Any] = cp.request(
        "POST", f"{DSVC_API}/namespaces/{namespace}/directservices", obj
    )
    return created


def health(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    obj = cp.request("GET", f"{DSVC_API}/namespaces/{namespace}/directservices/{NAME}")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == HEALTHY:
            return dict(cond)
    return {}


def events(cp: ControlPlane, namespace: str, reason: str, kind: str) -> list[dict[str, Any]]:
    items = cp.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [
        e
        for e in items
        if e["involvedObject"]["name"] == NAME and e["reason"] == reason and e["type"] == kind
    ]


def reconciler(api_endpoint: ApiEndpoint, body: dict[str, Any]) -> tuple[Reconciler, WatchView]:
    meta = body["metadata"]
    view = WatchView()
    shared = Shared(writer=KubeWriter(api_endpoint), http=HttpClient(), view=view)
    return Reconciler(Owner(meta["namespace"], meta["name"], meta["uid"]), shared=shared), view


def poll(rec: Reconciler, body: dict[str, Any]) -> float:
    return asyncio.run(rec.poll_once(body))


def internal_errors(namespace: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "directservice_internal_errors_total", {"namespace": namespace, "name": NAME}
    )
    return value or 0.0


def with_spec(body: dict[str, Any], mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    edited = copy.deepcopy(body)
    mutate(edited["spec"])
    return edited


def first_instance(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        spec["provider"]["static"]["instances"][0].update(fields)

    return mutate


# The CRD refuses these today; an object stored under an older or looser CRD still has them.
WRONG_TYPES = [
    (lambda s: s.update(port="http"), "spec.port"),
    (lambda s: s.update(timeouts="fast"), "spec.timeouts"),
    (lambda s: s.update(timeouts={"connect": 2}), "spec.timeouts.connect"),
    (lambda s: s.update(port={"name": "http", "port": "80"}), "spec.port.port"),
    (lambda s: s.update(pollInterval=5), "spec.pollInterval"),
    (lambda s: s.update(maxEndpointsPerSlice="many"), "spec.maxEndpointsPerSlice"),
    (lambda s: s.update(allowedCIDRs="10.0.0.0/8"), "spec.allowedCIDRs"),
    (lambda s: s.update(shrinkConfirmations=True), "spec.shrinkConfirmations"),
    (lambda s: s.update(rateBudget=10), "spec.rateBudget"),
    (lambda s: s.update(provider="static"), "spec.provider"),
    (lambda s: s["provider"].update(static=["10.20.0.11"]), "spec.provider.static"),
    (first_instance(port="9000"), "spec.provider.static.instances[0].port"),
    (first_instance(ready="yes"), "spec.provider.static.instances[0].ready"),
    (first_instance(weight="heavy"), "spec.provider.static.instances[0].weight"),
]


@pytest.mark.parametrize(("mutate", "field"), WRONG_TYPES, ids=[f for _, f in WRONG_TYPES])
def test_a_spec_with_wrong_types_is_invalid_spec_naming_the_field_until_fixed(
    api_endpoint: ApiEndpoint,
    own_cluster: ControlPlane,
    namespace: str,
    mutate: Callable[[dict[str, Any]], None],
    field: str,
) -> None:
    body = create_dsvc(own_cluster, namespace)
    rec, _ = reconciler(api_endpoint, body)

    delay = poll(rec, with_spec(body, mutate))

    assert delay > 0
    cond = health(own_cluster, namespace)
    assert (cond["status"], cond["reason"]) == ("False", Reason.INVALID_SPEC)
    assert field in cond["message"], cond["message"]
    assert api_slices(own_cluster, namespace) == []
    assert len(events(own_cluster, namespace, Reason.INVALID_SPEC, "Warning")) == 1

    poll(rec, body)  # the fixing edit

    cond = health(own_cluster, namespace)
    assert (cond["status"], cond["reason"]) == ("True", Reason.DISCOVERY_SUCCEEDED)
    assert published_ips(own_cluster, namespace) == {"10.20.0.11", "10.20.0.12"}


async def boom(*args: Any, **kwargs: Any) -> Discovery:
    raise RuntimeError("boom")


FAULTS = {
    "discover": (StaticProvider, "discover"),
    "publish": (Publisher, "publish"),
}


@pytest.mark.parametrize("where", sorted(FAULTS))
def test_an_unexpected_exception_is_internal_error_and_publishes_nothing(
    api_endpoint: ApiEndpoint,
    own_cluster: ControlPlane,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    body = create_dsvc(own_cluster, namespace)
    rec, view = reconciler(api_endpoint, body)
    poll(rec, body)
    view.deliver(own_cluster, namespace, NAME)
    assert published_ips(own_cluster, namespace) == {"10.20.0.11", "10.20.0.12"}
    slices_before = api_slices(own_cluster, namespace)
    service_path = f"/api/v1/namespaces/{namespace}/services/{NAME}"
    service_before = own_cluster.request("GET", service_path)
    errors_before = internal_errors(namespace)
    # The edit the faulty polls see would change what is published, were anything published.
    edited = with_spec(body, lambda s: s["provider"]["static"].update(instances=INSTANCES[:1]))
    monkeypatch.setattr(*FAULTS[where], boom)

    delays = [poll(rec, edited), poll(rec, edited)]  # neither raises

    assert all(d > 0 for d in delays)
    cond = health(own_cluster, namespace)
    assert (cond["status"], cond["reason"]) == ("False", Reason.INTERNAL_ERROR)
    assert "RuntimeError" in cond["message"] and "boom" in cond["message"]
    assert len(events(own_cluster, namespace, Reason.INTERNAL_ERROR, "Warning")) == 1
    assert internal_errors(namespace) == errors_before + 2
    assert api_slices(own_cluster, namespace) == slices_before  # resourceVersions included
    assert own_cluster.request("GET", service_path) == service_before

    monkeypatch.undo()
    poll(rec, edited)

    cond = health(own_cluster, namespace)
    assert (cond["status"], cond["reason"]) == ("True", Reason.DISCOVERY_SUCCEEDED)
    assert published_ips(own_cluster, namespace) == {"10.20.0.11"}
    assert len(events(own_cluster, namespace, Reason.INTERNAL_ERROR, "Warning")) == 1
