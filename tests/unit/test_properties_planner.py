"""Properties of the EndpointSlice planner (core/planner.py), through desired_endpoints and
plan_slices: a plan applied to the published slices leaves nothing more to do (also when
the slices make the round trip through render, as the API server returns them); no slice
exceeds max_per_slice (terminating endpoints aside) or mixes address families; every
desired endpoint, with its conditions, sits in exactly one slice. Published slices start
from anything: earlier plans, unreadable slices, another owner, overfull or duplicated
content."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.api.names import Owner
from directservice.core.endpoints import Endpoint
from directservice.core.model import (
    AddressFamily,
    EndpointState,
    Instance,
    PublishedSlice,
    SliceContent,
    SliceKey,
    SlicePlan,
    family_of,
)
from directservice.core.planner import API_MAX_PER_SLICE, Members, desired_endpoints, plan_slices
from directservice.publish.render import build_endpoint_slice, read_endpoint_slice
from properties import BOUNDED

pytestmark = pytest.mark.unit

SERVICE, UID, PORT_NAME = "svc", "uid-1", "http"
IPS = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "fd00::1", "fd00::2")
PORTS = (80, 8080)
SCHEMES = (None, "http", "grpc")
_versions = itertools.count(1)

states = st.builds(
    EndpointState,
    ready=st.booleans(),
    weight=st.sampled_from((0.0, 1.0, 100.0, 0.5)),
    hostname=st.none() | st.sampled_from(("a-1", "b-2")),
    serving=st.booleans(),
    terminating=st.booleans(),
)
endpoints = st.lists(
    st.builds(
        lambda ip, port, scheme, weight, state: Endpoint(
            Instance(ip, port, weight, scheme=scheme),
            hostname=state.hostname or ip.replace(".", "-").replace(":", "-"),
            ready=state.ready,
            serving=state.serving,
            terminating=state.terminating,
        ),
        st.sampled_from(IPS),
        st.sampled_from(PORTS),
        st.sampled_from(SCHEMES),
        st.sampled_from((0.0, 1.0, 100.0)),
        states,
    ),
    max_size=12,
    unique_by=lambda e: e.id,
)
keys = st.builds(
    SliceKey, st.sampled_from(list(AddressFamily)), st.sampled_from(PORTS), st.sampled_from(SCHEMES)
)
contents = st.builds(
    lambda key, port_name, members: SliceContent(key, port_name, tuple(members)),
    keys,
    st.sampled_from((PORT_NAME, "grpc")),
    st.lists(st.tuples(st.sampled_from(IPS), states), max_size=7, unique_by=lambda m: m[0]),
)
foreign_slices = st.lists(
    st.builds(
        PublishedSlice,
        name=st.sampled_from(
            [f"{SERVICE}-{f}-{i}" for f in ("v4", "v6") for i in range(4)] + ["hand-made"]
        ),
        resource_version=st.integers(1, 9).map(str),
        content=st.none() | contents,
        owner_uid=st.sampled_from((UID, None, "uid-2")),
    ),
    max_size=5,
    unique_by=lambda s: s.name,
)
Apply = Callable[[Sequence[PublishedSlice], SlicePlan], list[PublishedSlice]]


def apply_plain(published: Sequence[PublishedSlice], plan: SlicePlan) -> list[PublishedSlice]:
    """The slices after the plan's writes, as the planner described them."""
    current = {s.name: s for s in published if s.name not in plan.delete}
    for desired in [*plan.create, *(d for d, _ in plan.update)]:
        current[desired.name] = PublishedSlice(
            desired.name, str(next(_versions)), desired.content, UID
        )
    return sorted(current.values(), key=lambda s: s.name)


def apply_rendered(published: Sequence[PublishedSlice], plan: SlicePlan) -> list[PublishedSlice]:
    """The same, each written slice rendered and read back as the API server returns it."""
    owner = Owner(namespace="ns", name=SERVICE, uid=UID)
    current = {s.name: s for s in published if s.name not in plan.delete}
    for desired in [*plan.create, *(d for d, _ in plan.update)]:
        obj = build_endpoint_slice(owner, desired)
        obj["metadata"]["resourceVersion"] = str(next(_versions))
        current[desired.name] = read_endpoint_slice(obj)
    return sorted(current.values(), key=lambda s: s.name)


def planned(
    desired: dict[SliceKey, Members], published: Sequence[PublishedSlice], max_per_slice: int
) -> SlicePlan:
    return plan_slices(
        SERVICE,
        desired,
        published,
        port_name=PORT_NAME,
        owner_uid=UID,
        max_per_slice=max_per_slice,
    )


def check_state(
    desired: dict[SliceKey, Members], published: Sequence[PublishedSlice], max_per_slice: int
) -> None:
    readable = [s.content for s in published if s.content is not None]
    assert len(readable) == len(published), "an unreadable slice was left behind"
    if not desired:  # nothing to publish: at most one empty placeholder slice
        assert len(readable) <= 1 and all(not c.endpoints for c in readable)
        return
    seen: dict[tuple[SliceKey, str], EndpointState] = {}
    for content in readable:
        # max_per_slice counts endpoints that are not terminating; draining ones may ride on
        # top in the slice that held them, within the API's cap.
        active = [ip for ip, state in content.endpoints if not state.terminating]
        assert 1 <= len(content.endpoints) <= API_MAX_PER_SLICE
        assert len(active) <= max_per_slice
        assert {family_of(ip) for ip, _ in content.endpoints} == {content.key.family}
        for ip, state in content.endpoints:
            assert (content.key, ip) not in seen, f"{ip} is in two slices of {content.key}"
            seen[(content.key, ip)] = state
    assert seen == {(key, ip): s for key, members in desired.items() for ip, s in members.items()}


@pytest.mark.parametrize("apply", [apply_plain, apply_rendered], ids=["plain", "rendered"])
@BOUNDED
@given(
    wanted=endpoints,
    default_protocol=st.sampled_from(SCHEMES),
    published=foreign_slices,
    max_per_slice=st.integers(1, 4),
)
def test_a_plan_applied_leaves_nothing_to_do(
    apply: Apply,
    wanted: list[Endpoint],
    default_protocol: str | None,
    published: list[PublishedSlice],
    max_per_slice: int,
) -> None:
    desired = desired_endpoints(wanted, default_protocol)
    first = planned(desired, published, max_per_slice)
    for desired_slice, _ in first.update:  # addressType is immutable: never changed in place
        old = next(s for s in published if s.name == desired_slice.name)
        assert old.content is None or old.content.key.family == desired_slice.content.key.family
    after = apply(published, first)
    check_state(desired, after, max_per_slice)
    again = planned(desired, after, max_per_slice)
    assert again.empty, again


@BOUNDED
@given(before=endpoints, now=endpoints, max_per_slice=st.integers(1, 4))
def test_successive_answers_converge_in_one_plan_each(
    before: list[Endpoint], now: list[Endpoint], max_per_slice: int
) -> None:
    """From a state the planner made itself, the next answer also takes one plan."""
    published = apply_plain([], planned(desired_endpoints(before, None), [], max_per_slice))
    desired = desired_endpoints(now, None)
    after = apply_plain(published, planned(desired, published, max_per_slice))
    check_state(desired, after, max_per_slice)
    assert planned(desired, after, max_per_slice).empty
