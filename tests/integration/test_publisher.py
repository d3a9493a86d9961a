"""Publisher against the real API server, with a view that holds what "the watch delivered".

The view is plain memory the test fills (deliver() copies what the API server holds right
now, as a caught-up watch would); writes go to the real API server through KubeWriter.
"""

from __future__ import annotations

import asyncio
import urllib.error
import uuid
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.spec import DirectServiceSpec
from directservice.core.endpoints import Traffic, compose
from directservice.core.model import Instance
from directservice.discovery import parse_spec
from directservice.publish.apiclient import ApiEndpoint
from directservice.publish.publisher import Publisher
from directservice.publish.render import read_service_shape
from directservice.publish.writer import KubeWriter, WriteError
from support import WatchView

pytestmark = pytest.mark.integration

NAME = "web"
THREE = (Instance("10.0.0.1", 8080), Instance("10.0.0.2", 8080), Instance("10.0.0.3", 8080))


def spec(max_per_slice: int = 2) -> DirectServiceSpec:
    return parse_spec(
        {
            "provider": {"static": {"instances": [{"ip": "10.0.0.1", "port": 8080}]}},
            "port": {"name": "http"},
            "maxEndpointsPerSlice": max_per_slice,
        }
    )


def service_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{NAME}"


def slice_path(namespace: str, name: str = "") -> str:
    base = f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
    return f"{base}/{name}" if name else base


def api_slices(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.request("GET", slice_path(namespace))["items"]
    return sorted(items, key=lambda s: s["metadata"]["name"])


def api_service(cp: ControlPlane, namespace: str) -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = cp.request("GET", service_path(namespace))
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise
    return found


def addresses(cp: ControlPlane, namespace: str) -> dict[str, list[str]]:
    return {
        s["metadata"]["name"]: [a for e in s["endpoints"] or [] for a in e["addresses"]]
        for s in api_slices(cp, namespace)
    }


def publisher(api_endpoint: ApiEndpoint, namespace: str) -> tuple[Publisher, WatchView]:
    view = WatchView()
    owner = Owner(namespace, NAME, str(uuid.uuid4()))
    return Publisher(owner, KubeWriter(api_endpoint), view), view


def publish(pub: Publisher, instances: tuple[Instance, ...] = THREE, max_per: int = 2) -> int:
    endpoints = compose(instances, Traffic()).endpoints
    return asyncio.run(pub.publish(spec(max_per), endpoints))


def refused(pub: Publisher, instances: tuple[Instance, ...], max_per: int = 2) -> WriteError:
    with pytest.raises(WriteError) as info:
        publish(pub, instances, max_per)
    return info.value


def test_first_publish_writes_everything_and_the_overlay_stops_a_second_write(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    pub, _ = publisher(api_endpoint, namespace)

    assert publish(pub) == 3  # the Service and two slices (at most 2 endpoints each)
    assert publish(pub) == 0  # the watch delivered nothing yet: the overlay knows

    assert api_service(control_plane, namespace) is not None
    assert addresses(control_plane, namespace) == {
        "web-v4-0": ["10.0.0.1", "10.0.0.2"],
        "web-v4-1": ["10.0.0.3"],
    }


def test_a_service_deleted_by_hand_is_recreated_after_the_deleted_event(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    pub, _ = publisher(api_endpoint, namespace)
    assert publish(pub) == 3
    control_plane.request("DELETE", service_path(namespace))
    pub.forget_service()  # what the watch's DELETED event does

    assert publish(pub) == 1

    found = api_service(control_plane, namespace)
    assert found is not None and read_service_shape(found) is not None


def test_a_slice_deleted_by_hand_is_recreated_after_the_deleted_event(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    pub, _ = publisher(api_endpoint, namespace)
    assert publish(pub) == 3
    control_plane.request("DELETE", slice_path(namespace, "web-v4-1"))
    pub.forget_slice("web-v4-1")

    assert publish(pub) == 1

    assert addresses(control_plane, namespace)["web-v4-1"] == ["10.0.0.3"]


@pytest.mark.parametrize("view_catches_up", [False, True], ids=["view-stale", "view-updated"])
def test_replacing_a_slice_deleted_under_a_stale_view_is_not_found_then_recreated(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str, view_catches_up: bool
) -> None:
    one = (Instance("10.0.0.1", 8080),)
    changed = (Instance("10.0.0.1", 8080, ready=False),)
    pub, view = publisher(api_endpoint, namespace)
    assert publish(pub, one) == 2
    view.deliver(control_plane, namespace, NAME)  # the view shows web-v4-0 at its resourceVersion
    control_plane.request("DELETE", slice_path(namespace, "web-v4-0"))

    err = refused(pub, changed)
    assert (err.reason, err.status) == (Reason.PUBLISH_NOT_FOUND, 404)
    assert "web-v4-0" not in addresses(control_plane, namespace)

    if view_catches_up:
        view.deliver(control_plane, namespace, NAME)
    assert publish(pub, changed) == 1
    (recreated,) = api_slices(control_plane, namespace)
    assert recreated["metadata"]["name"] == "web-v4-0"
    assert recreated["endpoints"][0]["conditions"]["ready"] is False


def test_a_foreign_service_of_the_same_name_is_a_conflict_and_left_alone(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"team": "theirs"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "web", "port": 80}]},
    }
    control_plane.request("POST", f"/api/v1/namespaces/{namespace}/services", foreign)
    before = api_service(control_plane, namespace)
    pub, view = publisher(api_endpoint, namespace)
    view.deliver(control_plane, namespace, NAME)  # the label-selected watch never shows it
    assert view.service_shape is None

    err = refused(pub, THREE)

    assert err.reason == Reason.CONFLICT
    assert "not managed by directservice.io" in err.message
    assert NAME in err.message
    assert api_service(control_plane, namespace) == before
    assert api_slices(control_plane, namespace) == []


def test_a_stale_resource_version_is_a_conflict_until_the_view_catches_up(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    pub, view = publisher(api_endpoint, namespace)
    assert publish(pub) == 3
    view.deliver(control_plane, namespace, NAME)
    theirs = control_plane.request("GET", slice_path(namespace, "web-v4-1"))
    theirs["metadata"]["labels"]["touched"] = "by-someone-else"
    control_plane.request("PUT", slice_path(namespace, "web-v4-1"), theirs)
    grown = (*THREE, Instance("10.0.0.4", 8080))  # fills web-v4-1: an update of it

    err = refused(pub, grown)
    assert (err.reason, err.status) == (Reason.PUBLISH_CONFLICT, 409)
    assert addresses(control_plane, namespace)["web-v4-1"] == ["10.0.0.3"]

    view.deliver(control_plane, namespace, NAME)  # the watch shows the newer version
    assert publish(pub, grown) == 1
    assert addresses(control_plane, namespace) == {
        "web-v4-0": ["10.0.0.1", "10.0.0.2"],
        "web-v4-1": ["10.0.0.3", "10.0.0.4"],
    }


@pytest.mark.parametrize(
    "view_catches_up",
    [
        pytest.param(False, id="view-stale"),
        pytest.param(True, id="view-updated"),
    ],
)
def test_patching_a_service_deleted_under_a_stale_view_is_not_found_then_recreated(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str, view_catches_up: bool
) -> None:
    pub, view = publisher(api_endpoint, namespace)
    assert publish(pub) == 3
    view.deliver(control_plane, namespace, NAME)  # the view shows our Service
    control_plane.request("DELETE", service_path(namespace))
    moved = tuple(Instance(i.ip, 9090) for i in THREE)  # a new port: the Service changes

    err = refused(pub, moved)
    assert (err.reason, err.status) == (Reason.PUBLISH_NOT_FOUND, 404)

    if view_catches_up:
        view.deliver(control_plane, namespace, NAME)
    publish(pub, moved)
    found = api_service(control_plane, namespace)
    assert found is not None and found["spec"]["ports"][0]["port"] == 9090
    assert {s["ports"][0]["port"] for s in api_slices(control_plane, namespace)} == {9090}


@pytest.mark.parametrize("slices_seen", [False, True], ids=["view-empty", "view-has-slices"])
def test_a_takeover_behind_the_api_server_withdraws_nothing_then_writes_nothing(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str, slices_seen: bool
) -> None:
    """The replica that held the shard published; the one that takes it over, on a busy
    loop, has not seen the Service yet (the watches of Services and slices lag apart). Its
    create is refused as AlreadyExists: that is ours, not a conflict, and nothing of it is
    withdrawn or renamed. Once the watch has caught up, the takeover writes nothing."""
    before_holder, _ = publisher(api_endpoint, namespace)
    assert publish(before_holder) == 3
    published = addresses(control_plane, namespace)
    view = WatchView()
    if slices_seen:
        view.deliver(control_plane, namespace, NAME)
        view.service_shape = None  # the Service watch is behind the slice watch
    taker = Publisher(before_holder.owner, KubeWriter(api_endpoint), view)

    err = refused(taker, THREE)

    assert (err.reason, err.status) == (Reason.PUBLISH_CONFLICT, 409)
    assert "Service web exists and is ours" in err.message
    assert addresses(control_plane, namespace) == published
    view.deliver(control_plane, namespace, NAME)
    assert publish(taker) == 0
    assert addresses(control_plane, namespace) == published


def test_a_slice_of_ours_the_view_has_not_shown_is_not_renamed(
    api_endpoint: ApiEndpoint, control_plane: ControlPlane, namespace: str
) -> None:
    before_holder, _ = publisher(api_endpoint, namespace)
    assert publish(before_holder) == 3
    published = addresses(control_plane, namespace)
    view = WatchView()
    view.deliver(control_plane, namespace, NAME)
    view.slice_list = []  # the slice watch is behind the Service watch
    taker = Publisher(before_holder.owner, KubeWriter(api_endpoint), view)

    err = refused(taker, THREE)

    assert (err.reason, err.status) == (Reason.PUBLISH_CONFLICT, 409)
    assert "EndpointSlice web-v4-0 exists and is ours" in err.message
    view.deliver(control_plane, namespace, NAME)
    assert publish(taker) == 0
    assert addresses(control_plane, namespace) == published
    assert taker.conflicts() == ()
