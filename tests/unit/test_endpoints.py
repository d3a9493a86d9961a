"""core/endpoints.py: conditions, per-instance hostnames and drains."""

from __future__ import annotations

import pytest

from directservice.api.traffic import Exclusion
from directservice.core.endpoints import (
    Drain,
    Endpoint,
    Traffic,
    checked,
    compose,
    hostnames,
    update_drains,
)
from directservice.core.model import (
    AddressFamily,
    EndpointState,
    Instance,
    PublishedSlice,
    SliceContent,
    SliceKey,
)

A, B, C = Instance("10.0.0.1", 80), Instance("10.0.0.2", 80), Instance("10.0.0.3", 80)


def conditions(endpoint: Endpoint) -> tuple[bool, bool, bool]:
    return (endpoint.ready, endpoint.serving, endpoint.terminating)


def by_ip(traffic: Traffic, *instances: Instance) -> dict[str, tuple[bool, bool, bool]]:
    return {e.instance.ip: conditions(e) for e in compose(list(instances), traffic).endpoints}


def published(*members: tuple[str, EndpointState], port: int = 80) -> list[PublishedSlice]:
    key = SliceKey(AddressFamily.IPV4, port, None)
    return [PublishedSlice("svc-v4-0", "1", SliceContent(key, "http", tuple(members)), "uid")]


def test_each_kind_of_instance_gets_the_documented_conditions() -> None:
    drained = Instance("10.0.0.4", 80, weight=0)
    not_ready = Instance("10.0.0.5", 80, ready=False)
    gone = Instance("10.0.0.6", 80)
    traffic = Traffic(
        failing=frozenset({("10.0.0.2", 80)}),
        exclude=(Exclusion("10.0.0.3"),),
        draining=(Drain(gone, until=99.0),),
    )
    assert by_ip(traffic, A, B, C, drained, not_ready) == {
        "10.0.0.1": (True, True, False),
        "10.0.0.2": (False, False, False),  # failing its checks
        "10.0.0.3": (False, False, False),  # excluded by hand
        "10.0.0.4": (False, True, False),  # weight 0: drained, but may finish requests
        "10.0.0.5": (False, False, False),
        "10.0.0.6": (False, False, True),  # left discovery: terminating
    }


def test_panic_ignores_health_but_not_exclusions_or_discovery() -> None:
    traffic = Traffic(
        failing=frozenset({("10.0.0.1", 80), ("10.0.0.2", 80)}),
        panic=True,
        exclude=(Exclusion("10.0.0.3", 80),),
    )
    assert by_ip(traffic, A, B, C) == {
        "10.0.0.1": (True, True, False),
        "10.0.0.2": (True, True, False),
        "10.0.0.3": (False, False, False),
    }


def test_an_exclusion_with_a_port_takes_only_that_port() -> None:
    other_port = Instance("10.0.0.1", 81)
    composition = compose([A, other_port], Traffic(exclude=(Exclusion("10.0.0.1", 81),)))
    assert [conditions(e) for e in composition.endpoints] == [
        (True, True, False),
        (False, False, False),
    ]
    assert composition.excluded == ("10.0.0.1:81",)


def test_excluded_instances_are_not_health_checked() -> None:
    assert checked([A, B, C], (Exclusion("10.0.0.2"),)) == [A, C]


def test_a_drained_instance_that_returns_is_published_once_and_live() -> None:
    composition = compose([A], Traffic(draining=(Drain(A, until=99.0),)))
    assert [conditions(e) for e in composition.endpoints] == [(True, True, False)]


@pytest.mark.parametrize(
    ("instances", "expected"),
    [
        ([Instance("10.1.2.3", 80)], ["10-1-2-3"]),
        ([Instance("10.1.2.3", 80), Instance("10.1.2.3", 81)], ["10-1-2-3-80", "10-1-2-3-81"]),
        ([Instance("fd00::7", 80)], ["fd00--7"]),
        # "::7" with dashes would start with '-': the exploded form is a valid label.
        ([Instance("::7", 80)], ["0000-0000-0000-0000-0000-0000-0000-0007"]),
        ([Instance("10.0.0.1", 80, hostname="Worker_0")], ["worker-0"]),
        # Two instances claim one identity: neither may have it, both fall back to their IP.
        (
            [Instance("10.0.0.1", 80, hostname="w"), Instance("10.0.0.2", 80, hostname="w")],
            ["10-0-0-1", "10-0-0-2"],
        ),
        ([Instance("10.0.0.1", 80, hostname="___")], ["10-0-0-1"]),
    ],
)
def test_hostnames_follow_the_documented_rule(
    instances: list[Instance], expected: list[str]
) -> None:
    names = hostnames(instances)
    assert [names[(i.ip, i.port)] for i in instances] == expected


def test_a_long_identity_is_cut_to_a_valid_label() -> None:
    (name,) = hostnames([Instance("10.0.0.1", 80, hostname="a" * 62 + "-b")]).values()
    assert name == "a" * 62 and len(name) <= 63


def test_removed_endpoints_drain_until_the_deadline_then_go() -> None:
    now = 100.0
    slices = published(
        ("10.0.0.1", EndpointState(True, 100.0)), ("10.0.0.2", EndpointState(True, 7.0))
    )

    drains = update_drains((), slices, [A], now=now, drain_seconds=10)

    assert [(d.instance.ip, d.instance.weight, d.until) for d in drains] == [
        ("10.0.0.2", 7.0, 110.0)
    ]
    # Planning again (a health change, a later poll) keeps the same deadline.
    after = published(
        ("10.0.0.1", EndpointState(True, 100.0)),
        ("10.0.0.2", EndpointState(False, 7.0, serving=False, terminating=True)),
    )
    assert update_drains(drains, after, [A], now=105.0, drain_seconds=10) == drains
    # Past the deadline it ends, and its terminating endpoint is not taken up again.
    assert update_drains(drains, after, [A], now=110.0, drain_seconds=10) == ()


def test_an_endpoint_listed_again_stops_draining() -> None:
    drains = (Drain(B, until=110.0),)
    assert update_drains(drains, published(), [A, B], now=101.0, drain_seconds=10) == ()


def test_after_a_restart_terminating_endpoints_are_adopted_once() -> None:
    slices = published(("10.0.0.2", EndpointState(False, 100.0, serving=False, terminating=True)))
    (adopted,) = update_drains((), slices, [A], now=50.0, drain_seconds=10, adopt=True)
    assert (adopted.instance.ip, adopted.until) == ("10.0.0.2", 60.0)
    assert update_drains((), slices, [A], now=50.0, drain_seconds=10) == ()


def test_drain_seconds_zero_removes_at_once() -> None:
    slices = published(("10.0.0.2", EndpointState(True, 100.0)))
    assert update_drains((), slices, [A], now=1.0, drain_seconds=0) == ()
