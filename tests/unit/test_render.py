"""Rendering Services and EndpointSlices, and reading them back as domain types."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    EndpointState,
    SliceContent,
    SliceKey,
)
from directservice.core.planner import slice_name
from directservice.publish.render import (
    ANNOTATION_WEIGHTS,
    LABEL_MANAGED_BY,
    LABEL_SERVICE_NAME,
    Owner,
    ServiceShape,
    build_endpoint_slice,
    build_service,
    format_weight,
    read_endpoint_slice,
    read_service_shape,
)

pytestmark = pytest.mark.unit

OWNER = Owner(namespace="models", name="mnist", uid="0b6c-uid")
KEY = SliceKey(AddressFamily.IPV4, 50000, None)


def content(*endpoints: tuple[str, EndpointState], key: SliceKey = KEY) -> SliceContent:
    return SliceContent(key=key, port_name="http", endpoints=tuple(endpoints))


def rendered(slice_content: SliceContent, name: str = "mnist-v4-0") -> dict[str, Any]:
    obj = build_endpoint_slice(OWNER, DesiredSlice(name, slice_content))
    obj["metadata"]["resourceVersion"] = "42"
    return obj


@pytest.mark.parametrize(
    "slice_content",
    [
        content(("10.0.0.1", EndpointState(True, 100.0)), ("10.0.0.2", EndpointState(False, 0.0))),
        content(("10.0.0.3", EndpointState(True, 0.5, hostname="worker-3"))),
        content(("10.0.0.4", EndpointState(False, 100.0))),
        content(
            ("fd00::1", EndpointState(True, 7.0)),
            key=SliceKey(AddressFamily.IPV6, 8080, "h2c"),
        ),
        content(),
    ],
)
def test_round_trip(slice_content: SliceContent) -> None:
    published = read_endpoint_slice(rendered(slice_content))
    assert published.name == "mnist-v4-0"
    assert published.resource_version == "42"
    assert published.owner_uid == OWNER.uid
    assert published.content == slice_content


def test_round_trip_survives_json() -> None:
    slice_content = content(
        ("10.0.0.1", EndpointState(True, 0.5)), ("10.0.0.2", EndpointState(True, 3))
    )
    obj = json.loads(json.dumps(rendered(slice_content)))
    assert read_endpoint_slice(obj).content == slice_content


def test_weights_annotation_keeps_ints_as_ints() -> None:
    obj = rendered(
        content(("10.0.0.1", EndpointState(True, 100.0)), ("10.0.0.2", EndpointState(True, 0.5)))
    )
    raw = obj["metadata"]["annotations"][ANNOTATION_WEIGHTS]
    assert raw == '{"10.0.0.1":100,"10.0.0.2":0.5}'
    assert format_weight(100.0) == 100
    assert isinstance(format_weight(100.0), int)
    assert format_weight(0.5) == 0.5


@pytest.mark.parametrize(
    ("state", "conditions"),
    [
        (EndpointState(False, 0.0), {"ready": False, "serving": True, "terminating": False}),
        (
            EndpointState(False, 5.0, serving=False),
            {"ready": False, "serving": False, "terminating": False},
        ),
        (
            EndpointState(False, 5.0, serving=False, terminating=True),
            {"ready": False, "serving": False, "terminating": True},
        ),
    ],
    ids=["drained-weight-0", "not-ready", "terminating"],
)
def test_conditions_are_rendered_and_read_back(
    state: EndpointState, conditions: dict[str, bool]
) -> None:
    obj = rendered(content(("10.0.0.1", state)))
    (endpoint,) = obj["endpoints"]
    assert endpoint["addresses"] == ["10.0.0.1"]
    assert endpoint["conditions"] == conditions
    assert "hostname" not in endpoint
    read = read_endpoint_slice(obj).content
    assert read is not None and read.as_map()["10.0.0.1"] == state


def test_slice_labels_claim_the_slice_for_us_not_the_builtin_controller() -> None:
    meta = rendered(content(("10.0.0.1", EndpointState(True, 1.0))))["metadata"]
    assert meta["labels"][LABEL_SERVICE_NAME] == "mnist"
    assert meta["labels"]["kubernetes.io/service-name"] == "mnist"
    assert meta["labels"]["endpointslice.kubernetes.io/managed-by"] == "directservice.io"
    assert "endpointslice-controller.k8s.io" not in json.dumps(meta)
    assert LABEL_MANAGED_BY == "endpointslice.kubernetes.io/managed-by"


def test_slice_body() -> None:
    obj = rendered(content(key=SliceKey(AddressFamily.IPV6, 8080, "h2c")), name="mnist-v6-3")
    assert obj["apiVersion"] == "discovery.k8s.io/v1"
    assert obj["kind"] == "EndpointSlice"
    assert obj["metadata"]["name"] == "mnist-v6-3"
    assert obj["metadata"]["namespace"] == "models"
    assert obj["addressType"] == "IPv6"
    assert obj["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "h2c"}]
    assert obj["endpoints"] == []


def test_owner_reference() -> None:
    for obj in (
        rendered(content()),
        build_service(OWNER, ServiceShape("http", 80, None, OWNER.uid)),
    ):
        assert obj["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "directservice.io/v1alpha1",
                "kind": "DirectService",
                "name": "mnist",
                "uid": "0b6c-uid",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]


def test_slice_name() -> None:
    assert slice_name("mnist", AddressFamily.IPV4, 0) == "mnist-v4-0"
    assert slice_name("mnist", AddressFamily.IPV6, 12) == "mnist-v6-12"


# --- reading slices that are not (quite) ours --------------------------------------------


def test_missing_weights_annotation_means_the_default_weight() -> None:
    obj = rendered(content(("10.0.0.1", EndpointState(True, 5.0))))
    del obj["metadata"]["annotations"]
    published = read_endpoint_slice(obj)
    assert published.content is not None
    assert published.content.endpoints == (("10.0.0.1", EndpointState(True, 100.0)),)


def test_missing_ready_condition_means_ready() -> None:
    obj = rendered(content(("10.0.0.1", EndpointState(True, 100.0))))
    del obj["endpoints"][0]["conditions"]
    published = read_endpoint_slice(obj)
    assert published.content is not None
    assert published.content.endpoints[0][1].ready is True


def _broken(change: str) -> dict[str, Any]:
    obj = rendered(content(("10.0.0.1", EndpointState(True, 100.0))))
    if change == "two ports":
        obj["ports"].append({"name": "b", "port": 81})
    elif change == "no ports":
        obj["ports"] = []
    elif change == "port without number":
        del obj["ports"][0]["port"]
    elif change == "two addresses":
        obj["endpoints"][0]["addresses"].append("10.0.0.2")
    elif change == "FQDN":
        obj["addressType"] = "FQDN"
    elif change == "no addressType":
        del obj["addressType"]
    elif change == "weights not JSON":
        obj["metadata"]["annotations"][ANNOTATION_WEIGHTS] = "{not json"
    elif change == "weight not a number":
        obj["metadata"]["annotations"][ANNOTATION_WEIGHTS] = '{"10.0.0.1": "heavy"}'
    elif change == "weights a list":
        obj["metadata"]["annotations"][ANNOTATION_WEIGHTS] = "[1, 2]"
    elif change == "weights null":
        obj["metadata"]["annotations"][ANNOTATION_WEIGHTS] = "null"
    elif change == "endpoint not an object":
        obj["endpoints"] = ["10.0.0.1"]
    elif change == "port not an object":
        obj["ports"] = ["http"]
    return obj


@pytest.mark.parametrize(
    "change",
    [
        "two ports",
        "no ports",
        "port without number",
        "two addresses",
        "FQDN",
        "no addressType",
        "weights not JSON",
        "weight not a number",
        "weights a list",
        "weights null",
        "endpoint not an object",
        "port not an object",
    ],
)
def test_unreadable_slices_have_no_content(change: str) -> None:
    # A slice someone edited into a shape we cannot read is rewritten, never a crash.
    published = read_endpoint_slice(_broken(change))
    assert published.content is None
    assert published.name == "mnist-v4-0"
    assert published.resource_version == "42"
    assert published.owner_uid == OWNER.uid


def test_owner_uid_needs_a_controller_reference_of_our_kind() -> None:
    obj = rendered(content())
    ref = obj["metadata"]["ownerReferences"][0]
    for field, value in (("kind", "Deployment"), ("controller", False)):
        changed = copy.deepcopy(obj)
        changed["metadata"]["ownerReferences"][0][field] = value
        assert read_endpoint_slice(changed).owner_uid is None
    other = {**ref, "kind": "ReplicaSet", "uid": "nope"}
    obj["metadata"]["ownerReferences"] = [other, ref]
    assert read_endpoint_slice(obj).owner_uid == OWNER.uid


# --- Service -----------------------------------------------------------------------------


def test_service_is_headless_and_selector_less_with_a_named_port() -> None:
    obj = build_service(OWNER, ServiceShape("grpc", 50000, "h2c", OWNER.uid))
    assert obj["apiVersion"] == "v1"
    assert obj["kind"] == "Service"
    assert obj["metadata"]["name"] == "mnist"
    assert obj["metadata"]["namespace"] == "models"
    spec = obj["spec"]
    assert spec["clusterIP"] == "None"
    assert "selector" not in spec
    assert spec["ports"] == [
        {"name": "grpc", "port": 50000, "protocol": "TCP", "appProtocol": "h2c"}
    ]


def test_service_without_a_port_has_no_ports() -> None:
    spec = build_service(OWNER, ServiceShape("http", None, None, OWNER.uid))["spec"]
    assert "ports" not in spec
    assert "selector" not in spec


def test_service_shape_round_trip() -> None:
    for shape in (
        ServiceShape("grpc", 50000, "h2c", OWNER.uid),
        ServiceShape("http", 80, None, OWNER.uid),
    ):
        assert read_service_shape(build_service(OWNER, shape)) == shape


def test_a_service_without_our_label_is_not_ours() -> None:
    obj = build_service(OWNER, ServiceShape("http", 80, None, OWNER.uid))
    obj["metadata"]["labels"] = {"app": "mnist"}
    assert read_service_shape(obj) is None
    del obj["metadata"]["labels"]
    assert read_service_shape(obj) is None
    obj["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "helm"}
    assert read_service_shape(obj) is None
