"""Tenancy against the real API server: what the DirectService does not own is never
modified or deleted, the poll says Conflict naming the owner, and its own leftovers are
adopted.

The view is the operator's own IndexView over indexes that this test fills the way the
kopf indexes are filled: the objects the operator's watch selectors deliver, classified
by the same functions (observe_slice, observe_service). Writes go through KubeWriter.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from devenv.controlplane import ControlPlane
from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.core.endpoints import Traffic, compose
from directservice.core.model import Instance
from directservice.discovery import parse_spec
from directservice.obs import metrics
from directservice.publish.apiclient import ApiEndpoint
from directservice.publish.publisher import Publisher, TenancyView
from directservice.publish.writer import KubeWriter, WriteError
from tenancy import (
    OUR_SERVICE_LABELS,
    SERVICE_NAME,
    SERVICES,
    SLICE_MANAGER,
    TenantView,
    make_service,
    make_slice,
    our_slice_labels,
    ref,
    service_now,
    slices_by_name,
)

pytestmark = pytest.mark.integration

NAME = "web"
THREE = (Instance("10.0.0.1", 8080), Instance("10.0.0.2", 8080), Instance("10.0.0.3", 8080))
SPEC = parse_spec(
    {
        "provider": {"static": {"instances": [{"ip": "10.0.0.1", "port": 8080}]}},
        "port": {"name": "http"},
        "maxEndpointsPerSlice": 2,
    }
)


@pytest.fixture(scope="module")
def api_endpoint(own_cluster: ControlPlane) -> ApiEndpoint:
    return own_cluster.api_endpoint()


@pytest.fixture
def namespace(own_cluster: ControlPlane) -> str:
    name = f"ten-{uuid.uuid4().hex[:8]}"
    own_cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def publisher(api_endpoint: ApiEndpoint, namespace: str, uid: str | None = None) -> Publisher:
    owner = Owner(namespace, NAME, uid or str(uuid.uuid4()))
    pub = Publisher(owner, KubeWriter(api_endpoint), TenantView())
    assert isinstance(pub.view, TenancyView)
    return pub


def deliver(pub: Publisher, cp: ControlPlane) -> None:
    assert isinstance(pub.view, TenantView)
    pub.view.deliver(cp, pub.owner.namespace)


def publish(pub: Publisher, instances: tuple[Instance, ...] = THREE) -> int:
    return asyncio.run(pub.publish(SPEC, compose(instances, Traffic()).endpoints))


def refused(pub: Publisher, instances: tuple[Instance, ...] = THREE) -> WriteError:
    with pytest.raises(WriteError) as info:
        publish(pub, instances)
    return info.value


def writes(kind: str, verb: str) -> float:
    labels = {"kind": kind, "verb": verb}
    return metrics.REGISTRY.get_sample_value("directservice_api_writes_total", labels) or 0.0


# -- a Service of our name ---------------------------------------------------------------


def test_a_service_of_another_directservice_is_never_written_and_names_its_owner(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    theirs = make_service(own_cluster, namespace, NAME, OUR_SERVICE_LABELS, ref("other", "x"))
    pub = publisher(api_endpoint, namespace)
    deliver(pub, own_cluster)
    before = {verb: writes("Service", verb) for verb in ("create", "patch")}

    err = refused(pub)

    assert err.reason == Reason.CONFLICT
    assert f"Service web is owned by DirectService {namespace}/other" in err.message
    assert {verb: writes("Service", verb) for verb in before} == before  # not even tried
    assert service_now(own_cluster, namespace, NAME) == theirs
    assert slices_by_name(own_cluster, namespace) == {}
    assert pub.conflicts() == (f"Service web is owned by DirectService {namespace}/other",)


def test_our_slices_are_withdrawn_when_a_service_not_ours_takes_the_name(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    """Left in place they would feed that Service: kube-proxy and DNS take every slice
    labelled with its name."""
    pub = publisher(api_endpoint, namespace)
    assert publish(pub) == 3
    deliver(pub, own_cluster)
    own_cluster.request("DELETE", f"{SERVICES.format(ns=namespace)}/{NAME}")
    deliver(pub, own_cluster)
    pub.forget_service()  # the watch's DELETED event
    theirs = make_service(own_cluster, namespace, NAME, {"team": "b"})

    err = refused(pub)

    assert err.reason == Reason.CONFLICT
    assert "Service web exists and is not managed by directservice.io" in err.message
    assert slices_by_name(own_cluster, namespace) == {}
    assert service_now(own_cluster, namespace, NAME) == theirs
    assert pub.conflicts() == ("Service web exists and is not managed by directservice.io",)

    own_cluster.request("DELETE", f"{SERVICES.format(ns=namespace)}/{NAME}")
    deliver(pub, own_cluster)
    assert publish(pub) == 3  # the name is free again: everything comes back
    assert pub.conflicts() == ()


def test_leftovers_of_a_deleted_directservice_of_the_same_name_are_adopted(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    """A cluster without a garbage collector keeps what the old UID owned."""
    old = publisher(api_endpoint, namespace, uid="uid-before")
    assert publish(old) == 3
    new = publisher(api_endpoint, namespace, uid="uid-after")
    deliver(new, own_cluster)

    assert publish(new) == 3  # the Service patched, both slices rewritten: nothing created

    current = slices_by_name(own_cluster, namespace).values()
    uids = {r["uid"] for s in current for r in s["metadata"]["ownerReferences"]}
    assert uids == {"uid-after"}
    assert sorted(slices_by_name(own_cluster, namespace)) == ["web-v4-0", "web-v4-1"]
    refs = service_now(own_cluster, namespace, NAME)["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == ["uid-after"]
    deliver(new, own_cluster)
    assert publish(new) == 0 and new.conflicts() == ()


# -- slices that are not ours -----------------------------------------------------------


def test_a_slice_under_our_name_is_left_alone_its_name_skipped_and_reported(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    theirs = make_slice(own_cluster, namespace, "web-v4-0", {SERVICE_NAME: NAME})
    pub = publisher(api_endpoint, namespace)
    deliver(pub, own_cluster)

    assert publish(pub) == 3

    current = slices_by_name(own_cluster, namespace)
    assert sorted(current) == ["web-v4-0", "web-v4-1", "web-v4-2"]
    assert current["web-v4-0"] == theirs
    assert pub.conflicts() == (
        "EndpointSlice web-v4-0 is not managed by directservice.io; CoreDNS serves its "
        f"addresses under web.{namespace}.svc too",
    )
    deliver(pub, own_cluster)
    assert publish(pub, THREE[:1]) == 2  # a shrink: one of ours emptied, never theirs
    assert slices_by_name(own_cluster, namespace)["web-v4-0"] == theirs


def test_a_name_collision_the_view_cannot_see_is_a_conflict_then_another_name(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    """A slice named like ours but for another Service is outside every watch: the create
    is refused with 409 AlreadyExists."""
    theirs = make_slice(own_cluster, namespace, "web-v4-0", {SERVICE_NAME: "api"})
    pub = publisher(api_endpoint, namespace)
    deliver(pub, own_cluster)
    assert pub.conflicts() == ()

    err = refused(pub)
    assert err.reason == Reason.CONFLICT
    assert "EndpointSlice web-v4-0 exists and is not managed by directservice.io" in err.message

    assert publish(pub) == 2  # the two slices, under free names (the Service was written)
    assert sorted(slices_by_name(own_cluster, namespace)) == ["web-v4-0", "web-v4-1", "web-v4-2"]
    assert slices_by_name(own_cluster, namespace)["web-v4-0"] == theirs
    deliver(pub, own_cluster)
    assert publish(pub) == 0


def test_a_slice_with_our_labels_and_another_owner_survives_our_deletion(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    """A delete by label would take it; the operator deletes its own slices one by one."""
    lookalike = make_slice(
        own_cluster, namespace, "web-v4-7", our_slice_labels(NAME), ref("other", "uid-other")
    )
    pub = publisher(api_endpoint, namespace)
    deliver(pub, own_cluster)
    assert publish(pub) == 3
    assert f"owned by DirectService {namespace}/other" in pub.conflicts()[0]
    deliver(pub, own_cluster)
    assert any(f.labelled for f in pub.foreign())  # what the delete handler checks

    asyncio.run(pub.writer.delete_owned(pub.owner, True, pub.published_slices()))

    assert slices_by_name(own_cluster, namespace) == {"web-v4-7": lookalike}


def test_the_slice_watch_sees_other_managers_but_not_the_builtin_controller(
    api_endpoint: ApiEndpoint, own_cluster: ControlPlane, namespace: str
) -> None:
    mirrored = {SERVICE_NAME: NAME, SLICE_MANAGER: "endpointslicemirroring-controller.k8s.io"}
    builtin = {SERVICE_NAME: NAME, SLICE_MANAGER: "endpointslice-controller.k8s.io"}
    make_slice(own_cluster, namespace, "web-mirrored", mirrored)
    make_slice(own_cluster, namespace, "web-builtin", builtin)
    pub = publisher(api_endpoint, namespace)
    deliver(pub, own_cluster)

    assert [f.name for f in pub.foreign()] == ["web-mirrored"]
    assert "(managed by endpointslicemirroring-controller.k8s.io)" in pub.conflicts()[0]
