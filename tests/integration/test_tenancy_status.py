"""Tenancy as the user sees it: a real DirectService's status, its Events and the metric,
from Reconciler.poll_once against the real API server (provider `static`, no HTTP).

The view is the operator's IndexView filled as its watches would fill it (tenancy.py), and
the reporter is wired to the publisher as the kopf daemon wires it.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.controller.reconciler import Reconciler, Shared
from directservice.discovery.httpclient import HttpClient
from directservice.obs import metrics
from directservice.publish.apiclient import ApiEndpoint
from directservice.publish.writer import KubeWriter
from tenancy import (
    OUR_SERVICE_LABELS,
    SERVICE_NAME,
    SLICES,
    TenantView,
    make_service,
    make_slice,
    ref,
    service_now,
    slices_by_name,
)

pytestmark = pytest.mark.integration

NAME = "scorer"
DSVC_API = "/apis/directservice.io/v1alpha1"
INSTANCES = [{"ip": "10.20.0.11", "port": 9000}, {"ip": "10.20.0.12", "port": 9000}]


@pytest.fixture(scope="module")
def api_endpoint(own_cluster: ControlPlane) -> ApiEndpoint:
    return own_cluster.api_endpoint()


@pytest.fixture
def namespace(own_cluster: ControlPlane) -> str:
    name = f"tens-{secrets.token_hex(4)}"
    own_cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def create_dsvc(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    obj = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "1s",
                 "port": {"name": "http"}},
    }  # fmt: skip
    created: dict[str, Any] = cp.request(
        "POST", f"{DSVC_API}/namespaces/{namespace}/directservices", obj
    )
    return created


def reconciler(api_endpoint: ApiEndpoint, body: dict[str, Any]) -> tuple[Reconciler, TenantView]:
    meta = body["metadata"]
    view = TenantView()
    shared = Shared(writer=KubeWriter(api_endpoint), http=HttpClient(), view=view)
    rec = Reconciler(Owner(meta["namespace"], meta["name"], meta["uid"]), shared=shared)
    rec.reporter.conflicts = rec.publisher.conflicts  # as handlers.poll wires it
    return rec, view


def poll(rec: Reconciler, view: TenantView, cp: ControlPlane) -> dict[str, Any]:
    """One poll after the watches caught up; the DirectService as stored afterwards."""
    view.deliver(cp, rec.owner.namespace)
    asyncio.run(rec.poll_once(get_dsvc(cp, rec.owner.namespace)))
    return get_dsvc(cp, rec.owner.namespace)


def get_dsvc(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = cp.request(
        "GET", f"{DSVC_API}/namespaces/{namespace}/directservices/{NAME}"
    )
    return found


def healthy(dsvc: dict[str, Any]) -> dict[str, Any]:
    (cond,) = [c for c in dsvc["status"]["conditions"] if c["type"] == "DiscoveryHealthy"]
    return dict(cond)


def warnings(cp: ControlPlane, namespace: str) -> list[str]:
    items = cp.request("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e["message"] for e in items if (e["reason"], e["type"]) == (Reason.CONFLICT, "Warning")]


def gauge(namespace: str) -> float | None:
    labels = {"namespace": namespace, "name": NAME}
    return metrics.REGISTRY.get_sample_value("directservice_conflicting_objects", labels)


def test_a_slice_under_our_name_is_in_status_an_event_and_the_metric_and_then_gone(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    theirs = make_slice(own_cluster, namespace, "scorer-extra", {SERVICE_NAME: NAME})
    rec, view = reconciler(api_endpoint, create_dsvc(own_cluster, namespace))
    said = (
        "EndpointSlice scorer-extra is not managed by directservice.io; CoreDNS serves its "
        f"addresses under scorer.{namespace}.svc too"
    )

    first = poll(rec, view, own_cluster)
    second = poll(rec, view, own_cluster)

    assert (healthy(first)["status"], healthy(first)["reason"]) == ("True", "DiscoverySucceeded")
    assert first["status"]["conflicts"] == [said]
    assert first["status"]["readyEndpoints"] == 2  # our own publishing goes on
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert warnings(own_cluster, namespace) == [said]  # once, not per poll
    assert gauge(namespace) == 1
    assert slices_by_name(own_cluster, namespace)["scorer-extra"] == theirs

    own_cluster.request("DELETE", f"{SLICES.format(ns=namespace)}/scorer-extra")
    cleared = poll(rec, view, own_cluster)

    assert "conflicts" not in cleared["status"]
    assert gauge(namespace) == 0
    assert warnings(own_cluster, namespace) == [said]


def test_a_service_of_another_directservice_is_conflict_naming_the_owner_and_untouched(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    theirs = make_service(own_cluster, namespace, NAME, OUR_SERVICE_LABELS, ref("team-b", "u"))
    rec, view = reconciler(api_endpoint, create_dsvc(own_cluster, namespace))

    first = poll(rec, view, own_cluster)
    poll(rec, view, own_cluster)

    cond = healthy(first)
    assert (cond["status"], cond["reason"]) == ("False", Reason.CONFLICT)
    owner = f"Service scorer is owned by DirectService {namespace}/team-b"
    assert cond["message"].startswith(f"{owner}: it is left alone")
    assert first["status"]["conflicts"] == [owner]
    assert len(warnings(own_cluster, namespace)) == 1
    assert gauge(namespace) == 1
    assert service_now(own_cluster, namespace, NAME) == theirs
    assert slices_by_name(own_cluster, namespace) == {}

    own_cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/services/{NAME}")
    recovered = poll(rec, view, own_cluster)

    assert (healthy(recovered)["status"], healthy(recovered)["reason"]) == (
        "True",
        "DiscoverySucceeded",
    )
    assert service_now(own_cluster, namespace, NAME)["metadata"]["labels"] == OUR_SERVICE_LABELS
    assert len(slices_by_name(own_cluster, namespace)) == 1
