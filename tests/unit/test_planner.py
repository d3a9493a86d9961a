"""EndpointSlice planning: invariants over random inputs, then the minimal-write cases."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Iterable, Sequence

import pytest

from directservice.core.endpoints import Drain, Traffic, compose
from directservice.core.model import (
    AddressFamily,
    EndpointState,
    Instance,
    PublishedSlice,
    SliceContent,
    SliceKey,
    SlicePlan,
)
from directservice.core.planner import API_MAX_PER_SLICE, Members, desired_endpoints, plan_slices
from directservice.publish.render import Owner, build_endpoint_slice, read_endpoint_slice

pytestmark = pytest.mark.unit

SERVICE = "svc"
UID = "uid-1"
V4 = AddressFamily.IPV4
V6 = AddressFamily.IPV6
_versions = itertools.count(1)


def ip4(i: int) -> str:
    return str(ipaddress.IPv4Address(0x0A000000 + i))


def ip6(i: int) -> str:
    return str(ipaddress.IPv6Address((0xFD00 << 112) + i))


def desired_of(
    instances: Iterable[Instance], default_app_protocol: str | None = None
) -> dict[SliceKey, Members]:
    """The planner's input for a plain answer (no health checks, drains or exclusions)."""
    return desired_endpoints(compose(list(instances), Traffic()).endpoints, default_app_protocol)


def plan(
    instances: Iterable[Instance],
    published: Sequence[PublishedSlice],
    max_per_slice: int = 100,
    *,
    port_name: str = "http",
    owner_uid: str = UID,
) -> SlicePlan:
    return plan_slices(
        SERVICE,
        desired_of(instances),
        published,
        port_name=port_name,
        owner_uid=owner_uid,
        max_per_slice=max_per_slice,
    )


def apply(
    published: Sequence[PublishedSlice], result: SlicePlan, owner_uid: str = UID
) -> list[PublishedSlice]:
    """What the index holds after the writes succeed: each written slice goes through
    render and back, with a fresh resourceVersion, exactly as the API server returns it."""
    owner = Owner(namespace="ns", name=SERVICE, uid=owner_uid)
    current = {s.name: s for s in published}
    for name in result.delete:
        del current[name]
    written = [*result.create, *(d for d, _ in result.update)]
    for desired in written:
        obj = build_endpoint_slice(owner, desired)
        obj["metadata"]["resourceVersion"] = str(next(_versions))
        current[desired.name] = read_endpoint_slice(obj)
    return sorted(current.values(), key=lambda s: s.name)


def slice_contents(published: Sequence[PublishedSlice]) -> dict[str, dict[str, EndpointState]]:
    return {s.name: s.content.as_map() for s in published if s.content is not None}


def check_plan(
    desired: dict[SliceKey, Members],
    published: Sequence[PublishedSlice],
    result: SlicePlan,
    *,
    max_per_slice: int,
    port_name: str,
    owner_uid: str,
) -> None:
    """The invariants every plan must keep, whatever the input."""
    by_name = {s.name: s for s in published}
    updated = [d.name for d, _ in result.update]
    # Every published slice is updated, deleted or left alone: exactly one of them.
    assert sorted([*updated, *result.delete, *result.unchanged]) == sorted(by_name)
    created = [d.name for d in result.create]
    assert len(set(created)) == len(created)
    assert not set(created) & set(by_name)
    for desired_slice, version in result.update:
        old = by_name[desired_slice.name]
        assert version == old.resource_version
        if old.content is not None:  # addressType is immutable
            assert old.content.key.family == desired_slice.content.key.family
    for name in result.unchanged:
        assert by_name[name].owner_uid == owner_uid

    contents: list[SliceContent] = [
        *(by_name[n].content for n in result.unchanged),  # type: ignore[misc]
        *(d.content for d in result.create),
        *(d.content for d, _ in result.update),
    ]
    seen: dict[tuple[SliceKey, str], EndpointState] = {}
    if not desired:  # no endpoints at all: at most one empty placeholder slice remains
        assert len(contents) <= 1 and all(c is not None and not c.endpoints for c in contents)
        return
    for content in contents:
        assert content is not None
        active = [ip for ip, state in content.endpoints if not state.terminating]
        assert 1 <= len(content.endpoints) <= API_MAX_PER_SLICE
        assert len(active) <= max_per_slice  # draining endpoints may ride on top
        assert content.port_name == port_name
        for ip, state in content.endpoints:
            assert (content.key, ip) not in seen, f"{ip} published twice"
            seen[(content.key, ip)] = state
    expected = {(key, ip): st for key, members in desired.items() for ip, st in members.items()}
    assert seen == expected


# --- property-style: random inputs -------------------------------------------------------


def random_instances(rng: random.Random) -> list[Instance]:
    chosen: dict[tuple[str, int], Instance] = {}
    for _ in range(rng.choice([0, 1, 3, 10, 40, 120])):
        ip = ip4(rng.randrange(300)) if rng.random() < 0.75 else ip6(rng.randrange(100))
        port = rng.choice([80, 80, 80, 8080])
        chosen[(ip, port)] = Instance(
            ip=ip,
            port=port,
            weight=rng.choice([100.0, 100.0, 0.0, 0.5, 7.0]),
            hostname=rng.choice([None, None, f"w-{rng.randrange(9)}"]),
            scheme=rng.choice([None, None, None, "h2c"]),
        )
    return list(chosen.values())


def mutate(rng: random.Random, instances: list[Instance]) -> list[Instance]:
    kept = [i for i in instances if rng.random() > rng.choice([0.0, 0.05, 0.5])]
    changed = [
        Instance(i.ip, i.port, weight=rng.choice([0.0, 1.0, 100.0]), hostname=i.hostname)
        if rng.random() < 0.1
        else i
        for i in kept
    ]
    extra = random_instances(rng) if rng.random() < 0.5 else []
    merged = {(i.ip, i.port): i for i in [*extra, *changed]}
    return list(merged.values())


def junk_slices(rng: random.Random, published: list[PublishedSlice]) -> list[PublishedSlice]:
    """Slices the planner must cope with: unreadable, foreign, ownerless or duplicated."""
    taken = {s.name for s in published}
    free = [n for f in ("v4", "v6") for i in range(4) if (n := f"{SERVICE}-{f}-{i}") not in taken]
    out: list[PublishedSlice] = []
    for k in range(rng.choice([0, 0, 1, 2, 3])):
        name = free.pop(0) if free and rng.random() < 0.5 else f"{SERVICE}-junk-{k}"
        kind = rng.randrange(4)
        if kind == 0:
            out.append(PublishedSlice(name, "rv-junk", None, UID))
        elif kind == 1:
            key = SliceKey(V4, 9999, None)
            content = SliceContent(key, "http", ((ip4(1), EndpointState(True, 100.0)),))
            out.append(PublishedSlice(name, "rv-junk", content, UID))
        elif kind == 2 and published and published[0].content is not None:
            out.append(PublishedSlice(name, "rv-junk", published[0].content, None))
        elif published and published[-1].content is not None:
            out.append(PublishedSlice(name, "rv-junk", published[-1].content, UID))
    return out


def check_random_case(seed: int) -> None:
    """One random history: publish, perturb, plan, check, apply, plan again."""
    rng = random.Random(seed)
    max1 = rng.choice([1, 2, 3, 5, 10, 100])
    first = random_instances(rng)
    published = apply([], plan(first, [], max1))

    max2 = max1 if rng.random() < 0.6 else rng.choice([1, 2, 3, 5, 10, 100])
    port_name = "http" if rng.random() < 0.8 else "grpc"
    owner_uid = UID if rng.random() < 0.9 else "uid-2"
    published = sorted(published + junk_slices(rng, published), key=lambda s: s.name)
    desired = desired_of(mutate(rng, first))

    def run(pub: Sequence[PublishedSlice]) -> SlicePlan:
        return plan_slices(
            SERVICE,
            desired,
            pub,
            port_name=port_name,
            owner_uid=owner_uid,
            max_per_slice=max2,
        )

    result = run(published)
    check_plan(
        desired,
        published,
        result,
        max_per_slice=max2,
        port_name=port_name,
        owner_uid=owner_uid,
    )
    # Deterministic, and independent of the order the index lists slices in.
    assert run(published) == result
    assert run(list(reversed(published))) == result
    # Applying the plan reaches a steady state: the next poll writes nothing.
    after = apply(published, result, owner_uid)
    again = run(after)
    assert again.empty, f"seed {seed}: {again}"
    assert sorted(again.unchanged) == sorted(s.name for s in after)


@pytest.mark.parametrize("seed_block", range(6))
def test_random_plans_keep_the_invariants_and_reach_a_steady_state(seed_block: int) -> None:
    for seed in range(seed_block * 50, seed_block * 50 + 50):  # 300 seeded cases in all
        check_random_case(seed)


# --- minimal writes at scale ------------------------------------------------------------

N = 10_000


@pytest.fixture(scope="module")
def big() -> tuple[list[Instance], list[PublishedSlice]]:
    instances = [Instance(ip4(i), 80) for i in range(N)]
    result = plan(instances, [])
    assert len(result.create) == 100
    assert (len(result.update), len(result.delete)) == (0, 0)
    assert all(len(d.content.endpoints) == 100 for d in result.create)
    return instances, apply([], result)


def holders(published: Sequence[PublishedSlice], ips: Iterable[str]) -> set[str]:
    wanted = set(ips)
    return {name for name, members in slice_contents(published).items() if wanted & set(members)}


def test_big_no_change_writes_nothing(big: tuple[list[Instance], list[PublishedSlice]]) -> None:
    instances, published = big
    result = plan(instances, published)
    assert result.writes == 0
    assert len(result.unchanged) == 100


def test_big_one_removed_is_one_update(big: tuple[list[Instance], list[PublishedSlice]]) -> None:
    instances, published = big
    result = plan(instances[:4321] + instances[4322:], published)
    assert result.writes == 1
    assert [d.name for d, _ in result.update] == sorted(holders(published, [ip4(4321)]))


def test_big_one_added_is_one_create(big: tuple[list[Instance], list[PublishedSlice]]) -> None:
    instances, published = big
    result = plan([*instances, Instance(ip4(N + 5), 80)], published)
    assert result.writes == 1
    assert len(result.create) == 1  # every existing slice is full
    assert result.create[0].content.as_map().keys() == {ip4(N + 5)}


def test_big_one_replaced_while_draining_is_one_update_and_one_at_the_drain_end(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    gone, successor = instances[4321], Instance(ip4(N + 7), 80)
    answer = [*instances[:4321], *instances[4322:], successor]
    draining = Traffic(draining=(Drain(gone, until=10.0),))
    desired = desired_endpoints(compose(answer, draining).endpoints, None)
    result = plan_slices(
        SERVICE, desired, published, port_name="http", owner_uid=UID, max_per_slice=100
    )
    # The full slice keeps its draining endpoint and takes the successor: 101 in one write.
    ((written, _),) = result.update
    assert result.writes == 1 and {written.name} == holders(published, [gone.ip])
    members = written.content.as_map()
    assert members[gone.ip].terminating and not members[successor.ip].terminating
    assert len(members) == 101
    after = apply(published, result)
    ended = plan(answer, after)  # the drain is over
    assert ended.writes == 1 and [d.name for d, _ in ended.update] == [written.name]
    assert len(ended.update[0][0].content.endpoints) == 100


def test_big_one_weight_changed_is_one_update(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    changed = list(instances)
    changed[777] = Instance(ip4(777), 80, weight=0)
    result = plan(changed, published)
    assert result.writes == 1
    ((desired_slice, _),) = result.update
    drained = EndpointState(ready=False, weight=0.0, hostname="10-0-3-9", serving=True)
    assert desired_slice.content.as_map()[ip4(777)] == drained


def test_big_ten_percent_weight_change_rewrites_only_touched_slices(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    rng = random.Random(10)
    picked = set(rng.sample(range(N), N // 10))
    changed = [Instance(i.ip, 80, weight=50) if n in picked else i for n, i in enumerate(instances)]
    result = plan(changed, published)
    touched = holders(published, (ip4(n) for n in picked))
    assert (len(result.create), len(result.delete)) == (0, 0)
    assert {d.name for d, _ in result.update} == touched
    assert result.writes == len(touched) <= 100


def test_big_ten_percent_replaced_refills_the_slices_it_touches(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    rng = random.Random(11)
    removed = set(rng.sample(range(N), N // 10))
    survivors = [i for n, i in enumerate(instances) if n not in removed]
    added = [Instance(ip4(N + n), 80) for n in range(N // 10)]
    result = plan(survivors + added, published)
    touched = holders(published, (ip4(n) for n in removed))
    # The 1,000 newcomers fill exactly the room the 1,000 removals left: no new slice.
    assert (len(result.create), len(result.delete)) == (0, 0)
    assert {d.name for d, _ in result.update} == touched
    assert result.writes == len(touched)


def test_big_ten_percent_scale_down_and_up_of_whole_slices(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    # The first 1,000 addresses fill exactly 10 slices; replace them with 1,000 new ones.
    added = [Instance(ip4(N + n), 80) for n in range(N // 10)]
    result = plan(instances[N // 10 :] + added, published)
    # Ten emptied slices are rewritten with the newcomers instead of delete + create.
    assert (len(result.create), len(result.update), len(result.delete)) == (0, 10, 0)
    assert {d.name for d, _ in result.update} == holders(published, (ip4(n) for n in range(1000)))


def test_big_ten_percent_added_creates_ten_slices(
    big: tuple[list[Instance], list[PublishedSlice]],
) -> None:
    instances, published = big
    added = [Instance(ip4(N + n), 80) for n in range(N // 10)]
    result = plan(instances + added, published)
    assert (len(result.create), len(result.update), len(result.delete)) == (10, 0, 0)


# --- placement rules ---------------------------------------------------------------------


def published_slices(*groups: Sequence[str], max_per_slice: int = 10) -> list[PublishedSlice]:
    """Publish each group of IPv4 addresses as its own slice, named svc-v4-0, -1, ..."""
    out: list[PublishedSlice] = []
    for index, ips in enumerate(groups):
        members = {ip: EndpointState(True, 100.0, ip.replace(".", "-")) for ip in ips}
        content = SliceContent(SliceKey(V4, 80, None), "http", tuple(members.items()))
        out.append(PublishedSlice(f"{SERVICE}-v4-{index}", f"rv{index}", content, UID))
    return out


def test_an_addition_goes_to_the_fullest_slice_that_can_take_it() -> None:
    groups = [
        [ip4(i) for i in range(3)],
        [ip4(i) for i in range(10, 15)],
        [ip4(i) for i in range(20, 30)],
    ]
    published = published_slices(*groups)
    everyone = [Instance(ip, 80) for group in groups for ip in group]
    result = plan([*everyone, Instance(ip4(99), 80)], published, max_per_slice=10)
    assert result.writes == 1
    ((desired_slice, version),) = result.update
    assert (desired_slice.name, version) == (f"{SERVICE}-v4-1", "rv1")  # 5 held, room for 1
    assert set(desired_slice.content.as_map()) == {*groups[1], ip4(99)}
    assert result.unchanged == (f"{SERVICE}-v4-0", f"{SERVICE}-v4-2")


def test_additions_fill_a_slice_that_is_written_anyway() -> None:
    groups = [[ip4(i) for i in range(8)], [ip4(i) for i in range(10, 15)]]
    published = published_slices(*groups)
    # Drop one from the fuller slice: it is written anyway, so the newcomer goes there.
    wanted = [Instance(ip, 80) for ip in groups[0][1:] + groups[1]] + [Instance(ip4(99), 80)]
    result = plan(wanted, published, max_per_slice=10)
    assert result.writes == 1
    assert result.update[0][0].name == f"{SERVICE}-v4-0"
    assert ip4(99) in result.update[0][0].content.as_map()


def test_an_emptied_slice_is_reused_for_a_new_one_of_the_same_family() -> None:
    published = published_slices([ip4(1)], [ip4(2), ip4(3)])
    result = plan([Instance(ip, 80) for ip in (ip4(2), ip4(3), ip4(4))], published, max_per_slice=2)
    assert (len(result.create), len(result.delete)) == (0, 0)
    ((desired_slice, version),) = result.update
    assert (desired_slice.name, version) == (f"{SERVICE}-v4-0", "rv0")
    assert set(desired_slice.content.as_map()) == {ip4(4)}


def test_an_emptied_slice_of_the_other_family_is_not_reused() -> None:
    v6_content = SliceContent(SliceKey(V6, 80, None), "http", ((ip6(1), EndpointState(True, 100)),))
    published = [
        PublishedSlice(f"{SERVICE}-v6-0", "rv6", v6_content, UID),
        *published_slices([ip4(2), ip4(3)]),
    ]
    result = plan([Instance(ip, 80) for ip in (ip4(2), ip4(3), ip4(4))], published, max_per_slice=2)
    assert [d.name for d in result.create] == [f"{SERVICE}-v4-1"]  # v4-0 is taken
    assert result.delete == (f"{SERVICE}-v6-0",)
    assert result.update == ()


def test_two_ports_make_two_slices_with_different_keys() -> None:
    result = plan([Instance(ip4(1), 80), Instance(ip4(1), 8080), Instance(ip4(2), 80)], [])
    keys = sorted((d.content.key.port, len(d.content.endpoints)) for d in result.create)
    assert keys == [(80, 2), (8080, 1)]
    assert len({d.name for d in result.create}) == 2


def test_families_never_share_a_slice() -> None:
    result = plan([Instance(ip4(1), 80), Instance(ip6(1), 80), Instance(ip6(2), 80)], [])
    by_name = {d.name: d.content for d in result.create}
    assert sorted(by_name) == [f"{SERVICE}-v4-0", f"{SERVICE}-v6-0"]
    assert by_name[f"{SERVICE}-v4-0"].key.family is V4
    assert set(by_name[f"{SERVICE}-v6-0"].as_map()) == {ip6(1), ip6(2)}


def test_scheme_overrides_the_default_app_protocol() -> None:
    desired = desired_of(
        [Instance(ip4(1), 80), Instance(ip4(2), 80, scheme="h2c")], default_app_protocol="http"
    )
    assert set(desired) == {SliceKey(V4, 80, "http"), SliceKey(V4, 80, "h2c")}


def test_weight_zero_is_serving_but_not_ready_and_not_ready_is_neither() -> None:
    desired = desired_of(
        [Instance(ip4(1), 80, weight=0), Instance(ip4(2), 80, ready=False), Instance(ip4(3), 80)]
    )
    members = desired[SliceKey(V4, 80, None)]
    conditions = [(members[ip4(n)].ready, members[ip4(n)].serving) for n in (1, 2, 3)]
    assert conditions == [(False, True), (False, False), (True, True)]


def test_port_name_change_updates_every_slice_in_place() -> None:
    instances = [Instance(ip4(i), 80) for i in range(25)] + [Instance(ip6(1), 80)]
    published = apply([], plan(instances, [], max_per_slice=10))
    result = plan(instances, published, max_per_slice=10, port_name="web")
    assert (len(result.create), len(result.delete), len(result.unchanged)) == (0, 0, 0)
    assert sorted(d.name for d, _ in result.update) == sorted(s.name for s in published)
    assert all(d.content.port_name == "web" for d, _ in result.update)


def test_owner_uid_change_updates_every_slice() -> None:
    instances = [Instance(ip4(i), 80) for i in range(15)]
    published = apply([], plan(instances, [], max_per_slice=10))
    result = plan(instances, published, max_per_slice=10, owner_uid="uid-new")
    assert (len(result.create), len(result.delete)) == (0, 0)
    assert len(result.update) == 2
    assert plan(instances, apply(published, result, "uid-new"), 10, owner_uid="uid-new").empty


def test_an_unreadable_slice_is_deleted_and_its_endpoints_placed_again() -> None:
    published = [PublishedSlice(f"{SERVICE}-v4-0", "rv0", None, UID)]
    result = plan([Instance(ip4(1), 80)], published)
    assert result.delete == (f"{SERVICE}-v4-0",)
    assert [d.name for d in result.create] == [f"{SERVICE}-v4-1"]


def test_a_slice_for_a_port_no_longer_wanted_is_deleted() -> None:
    published = apply([], plan([Instance(ip4(1), 80)], []))
    result = plan([Instance(ip4(1), 81)], published)
    # The old port's slice is rewritten for the new port (create+delete → update).
    assert not result.create and not result.delete
    assert [d.content.key.port for d, _ in result.update] == [81]
    both = apply([], plan([Instance(ip4(1), 80), Instance(ip4(2), 81)], []))
    result = plan([Instance(ip4(2), 81)], both)
    assert (result.create, result.update) == ((), ())
    assert len(result.delete) == 1 and result.unchanged


def test_lowering_max_per_slice_splits_the_overflow() -> None:
    instances = [Instance(ip4(i), 80) for i in range(10)]
    published = apply([], plan(instances, [], max_per_slice=10))
    assert len(published) == 1
    result = plan(instances, published, max_per_slice=4)
    assert len(result.update) == 1
    assert len(result.update[0][0].content.endpoints) == 4
    assert sorted(len(d.content.endpoints) for d in result.create) == [2, 4]
    assert result.delete == ()
    assert plan(instances, apply(published, result), max_per_slice=4).empty


def test_an_endpoint_held_by_two_slices_is_kept_in_one() -> None:
    published = published_slices([ip4(1), ip4(2)], [ip4(2), ip4(3)])
    result = plan([Instance(ip4(n), 80) for n in (1, 2, 3)], published)
    assert result.unchanged == (f"{SERVICE}-v4-0",)
    ((desired_slice, _),) = result.update
    assert set(desired_slice.content.as_map()) == {ip4(3)}


def test_keys_with_and_without_an_app_protocol_plan_together() -> None:
    # Same family and port, app_protocol None for one and "h2c" for the other: the keys
    # must still be ordered (this used to raise TypeError comparing None with str).
    instances = [Instance(ip4(1), 80), Instance(ip4(2), 80, scheme="h2c")]
    result = plan(instances, [])
    assert sorted(str(d.content.key.app_protocol) for d in result.create) == ["None", "h2c"]
    assert plan(instances, apply([], result)).empty


def test_no_endpoints_keeps_one_empty_placeholder_slice() -> None:
    instances = [Instance(ip=ip4(i), port=80) for i in range(250)]
    published = apply([], plan(instances, []))
    assert len(published) == 3

    result = plan([], published)
    assert len(result.update) == 1 and not result.create
    placeholder, _version = result.update[0]
    assert placeholder.content.endpoints == ()
    assert sorted(result.delete) == sorted(s.name for s in published if s.name != placeholder.name)

    after = apply(published, result)
    assert plan([], after).empty  # the placeholder itself is steady state
    refilled = plan(instances[:5], after)
    assert not refilled.create and [d.name for d, _ in refilled.update] == [placeholder.name]
