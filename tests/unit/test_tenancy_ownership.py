"""Tenancy, the pure parts: whose object is it, names the planner may not take, what the
index shows as ours, and how conflicts reach status and Events."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.status import HEALTHY, PollResult, next_status
from directservice.controller.handlers import WATCHED_SLICES, IndexView
from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    EndpointState,
    PublishedSlice,
    ServiceShape,
    SliceContent,
    SliceKey,
)
from directservice.core.planner import plan_slices
from directservice.publish.render import (
    ENDPOINT_SLICE,
    SERVICE,
    Foreign,
    build_endpoint_slice,
    build_service,
    observe_service,
    observe_slice,
    read_service_shape,
)

pytestmark = pytest.mark.unit

OWNER = Owner("team-a", "web", "uid-now")
KEY = SliceKey(AddressFamily.IPV4, 8080, None)
T0, T1, T2 = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z"


def our_slice(name: str = "web-v4-0") -> dict[str, Any]:
    content = SliceContent(KEY, "http", (("10.0.0.1", EndpointState(ready=True, weight=100)),))
    obj = build_endpoint_slice(OWNER, DesiredSlice(name, content))
    obj["metadata"]["resourceVersion"] = "7"
    return obj


def our_service() -> dict[str, Any]:
    return build_service(OWNER, ServiceShape("http", 8080, None, OWNER.uid))


def owned_by(obj: dict[str, Any], **ref: Any) -> dict[str, Any]:
    changed = copy.deepcopy(obj)
    changed["metadata"]["ownerReferences"] = [{**OWNER.reference(), **ref}]
    return changed


# --- whose object is it ------------------------------------------------------------------


def test_our_objects_are_ours() -> None:
    assert isinstance(observe_slice(our_slice()), PublishedSlice)
    assert observe_service(our_service()) == read_service_shape(our_service())
    assert isinstance(observe_service(our_service()), ServiceShape)


def test_leftovers_of_an_earlier_directservice_of_the_same_name_are_adopted() -> None:
    """Deleted and created again: a new UID, and what the old one left is ours to rewrite."""
    old_slice = observe_slice(owned_by(our_slice(), uid="uid-before"))
    old_service = observe_service(owned_by(our_service(), uid="uid-before"))
    assert isinstance(old_slice, PublishedSlice) and old_slice.owner_uid == "uid-before"
    assert isinstance(old_service, ServiceShape) and old_service.owner_uid == "uid-before"


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ({"name": "other", "uid": "uid-other"}, "is owned by DirectService team-a/other"),
        ({"kind": "Deployment", "apiVersion": "apps/v1"}, "is owned by Deployment team-a/web"),
        ({"apiVersion": "elsewhere.example/v1"}, "is owned by DirectService team-a/web"),
        ({"controller": False}, "no DirectService controls it"),
    ],
    ids=["another-directservice", "another-kind", "another-group", "not-the-controller"],
)
def test_an_object_with_our_labels_and_another_owner_is_not_ours(
    ref: dict[str, Any], why: str
) -> None:
    observed = [
        (observe_slice(owned_by(our_slice(), **ref)), ENDPOINT_SLICE),
        (observe_service(owned_by(our_service(), **ref)), SERVICE),
    ]
    for seen, kind in observed:
        assert isinstance(seen, Foreign), kind
        assert (seen.kind, seen.labelled) == (kind, True)
        assert why in seen.why
    assert read_service_shape(owned_by(our_service(), **ref)) is None  # so no view adopts it


def test_an_object_without_our_label_says_who_manages_it() -> None:
    theirs = our_slice("web-extra")
    theirs["metadata"]["labels"] = {
        "kubernetes.io/service-name": "web",
        "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
    }
    del theirs["metadata"]["ownerReferences"]
    seen = observe_slice(theirs)
    assert isinstance(seen, Foreign) and not seen.labelled
    assert seen.describe() == (
        "EndpointSlice web-extra is not managed by directservice.io (managed by "
        "endpointslicemirroring-controller.k8s.io); CoreDNS serves its addresses under "
        "web.team-a.svc too"
    )
    plain = our_service()
    plain["metadata"]["labels"] = {"team": "b"}
    service = observe_service(plain)
    assert isinstance(service, Foreign)
    assert service.describe().startswith(
        "Service web is not managed by directservice.io (owned by DirectService team-a/web)"
    )


def test_a_slice_that_names_no_service_is_not_observed() -> None:
    obj = our_slice()
    del obj["metadata"]["labels"]["kubernetes.io/service-name"]
    assert observe_slice(obj) is None


# --- names the planner may not take --------------------------------------------------------


def published(name: str, ips: tuple[str, ...]) -> PublishedSlice:
    states = tuple((ip, EndpointState(ready=True, weight=100)) for ip in ips)
    return PublishedSlice(name, "1", SliceContent(KEY, "http", states), OWNER.uid)


def plan(current: list[PublishedSlice], ips: tuple[str, ...], reserved: set[str]) -> Any:
    desired = {KEY: {ip: EndpointState(ready=True, weight=100) for ip in ips}}
    return plan_slices(
        "web", desired, current, port_name="http", owner_uid=OWNER.uid, max_per_slice=2,
        reserved=reserved,
    )  # fmt: skip


def test_new_slices_skip_reserved_names() -> None:
    result = plan([], ("10.0.0.1", "10.0.0.2", "10.0.0.3"), {"web-v4-0", "web-v4-2"})
    assert [d.name for d in result.create] == ["web-v4-1", "web-v4-3"]
    assert result.update == () and result.delete == ()


def test_a_reserved_name_is_never_written_even_if_listed_as_published() -> None:
    current = [published("web-v4-0", ("10.0.0.9",)), published("web-v4-1", ("10.0.0.1",))]
    for ips in (("10.0.0.1", "10.0.0.2"), ()):  # growth, and the empty placeholder case
        result = plan(current, ips, {"web-v4-0"})
        written = [d.name for d in result.create] + [d.name for d, _ in result.update]
        assert "web-v4-0" not in [*written, *result.delete, *result.unchanged], ips


# --- the index view -------------------------------------------------------------------------


def test_the_index_view_tells_ours_from_what_is_not() -> None:
    ours = observe_slice(our_slice())
    theirs = Foreign(ENDPOINT_SLICE, "team-a", "web-x", "web", "is not managed by x")
    service = Foreign(SERVICE, "team-a", "web", "web", "is owned by DirectService team-a/b")
    view = IndexView(
        {("team-a", "web"): [ours, theirs]},  # type: ignore[arg-type]
        {("team-a", "web"): [service]},  # type: ignore[arg-type]
    )
    assert view.slices("team-a", "web") == [ours]
    assert view.service("team-a", "web") is None
    assert view.foreign("team-a", "web") == [service, theirs]
    assert view.foreign("team-a", "other") == []


def test_the_slice_watch_leaves_out_only_the_builtin_controller() -> None:
    assert WATCHED_SLICES == (
        "kubernetes.io/service-name,"
        "endpointslice.kubernetes.io/managed-by!=endpointslice-controller.k8s.io"
    )


# --- status and Events --------------------------------------------------------------------


def ok(now: str, **fields: Any) -> PollResult:
    return PollResult(1, "static", now, ready=1, total=1, **fields)


def test_conflicts_are_listed_and_warned_about_once_per_new_set() -> None:
    one, two = ("EndpointSlice a is not managed by directservice.io",), ("b", "c")
    status, events = next_status({}, ok(T0, conflicts=one))
    assert status["conflicts"] == list(one)
    assert [(e.type, e.reason) for e in events if e.reason == Reason.CONFLICT] == [
        ("Warning", Reason.CONFLICT)
    ]
    assert [c["status"] for c in status["conditions"] if c["type"] == HEALTHY] == ["True"]

    again, events = next_status(status, ok(T1, conflicts=one))
    assert again == status and events == []

    changed, events = next_status(again, ok(T1, conflicts=two))
    assert changed["conflicts"] == ["b", "c"]
    assert [e.message for e in events] == ["b; c"]

    cleared, events = next_status(changed, ok(T2))
    assert cleared["conflicts"] is None and events == []  # merge patch: the field goes
    assert "conflicts" not in next_status({}, ok(T2))[0]


def test_a_blocked_conflict_is_warned_about_once() -> None:
    message = "Service web is owned by DirectService team-a/b: it is left alone"
    result = PollResult(
        1, "static", T0, blocked_reason=Reason.CONFLICT, blocked_message=message,
        conflicts=("Service web is owned by DirectService team-a/b",),
    )  # fmt: skip
    status, events = next_status({}, result)
    assert [e.message for e in events if e.reason == Reason.CONFLICT] == [message]
    assert status["conflicts"] == ["Service web is owned by DirectService team-a/b"]
