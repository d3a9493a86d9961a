"""Churn-aware EndpointSlice planning: desired instances + published slices → minimal writes.

It follows the upstream EndpointSlice reconciler's rules:
- an endpoint stays in the slice that already holds it;
- additions fill slices that are being written anyway, then the fullest unchanged
  slice that can take all of them, and only then new slices;
- a slice that would be deleted while another is created is rewritten instead
  (same address family: addressType is immutable);
- emptied slices are removed;
- unlike upstream, `max_per_slice` counts only endpoints that are not terminating, so a
  draining endpoint does not push its successor out of a full slice;
- new slices never take a name that is taken, by our slices or by `reserved` ones (slices
  of that name that are not ours: they are never written).
Pure: no I/O, deterministic for a given input.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence

from directservice.core.endpoints import Endpoint
from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    EndpointState,
    PublishedSlice,
    SliceContent,
    SliceKey,
    SlicePlan,
    family_of,
)

Members = dict[str, EndpointState]
# The API's own cap on endpoints in one slice. `max_per_slice` counts the endpoints that are
# not terminating: one that is draining stays in its slice on top, so replacing an instance
# of a full slice is one write (the drained one out, its successor in), not a second slice.
API_MAX_PER_SLICE = 1000


def _active(members: Members) -> int:
    return sum(1 for state in members.values() if not state.terminating)


def _room(members: Members, max_per_slice: int) -> int:
    """How many more endpoints a slice holding `members` may take."""
    return max(min(max_per_slice - _active(members), API_MAX_PER_SLICE - len(members)), 0)


def slice_name(service: str, family: AddressFamily, index: int) -> str:
    """EndpointSlice names: "<service>-v4-0", "<service>-v6-1", ..."""
    return f"{service}-{family.short}-{index}"


def desired_endpoints(
    endpoints: Iterable[Endpoint], default_app_protocol: str | None
) -> dict[SliceKey, Members]:
    """Group endpoints by what a slice must share: family, port and protocol."""
    groups: dict[SliceKey, Members] = defaultdict(dict)
    for endpoint in endpoints:
        inst = endpoint.instance
        key = SliceKey(
            family=family_of(inst.ip),
            port=inst.port,
            app_protocol=inst.scheme or default_app_protocol,
        )
        groups[key][inst.ip] = EndpointState(
            ready=endpoint.ready,
            weight=inst.weight,
            hostname=endpoint.hostname,
            serving=endpoint.serving,
            terminating=endpoint.terminating,
        )
    return dict(groups)


def _ip_order(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return (address.version, int(address))


def _key_order(key: SliceKey) -> tuple[str, int, bool, str]:
    # app_protocol may be None for one key and a string for another: never compare them.
    return (key.family.value, key.port, key.app_protocol is not None, key.app_protocol or "")


def _content(key: SliceKey, port_name: str, members: Members) -> SliceContent:
    ordered = tuple(sorted(members.items(), key=lambda item: _ip_order(item[0])))
    return SliceContent(key=key, port_name=port_name, endpoints=ordered)


def plan_slices(
    service: str,
    desired: dict[SliceKey, Members],
    published: Sequence[PublishedSlice],
    *,
    port_name: str,
    owner_uid: str,
    max_per_slice: int,
    reserved: Collection[str] = (),
) -> SlicePlan:
    """The fewest creates, updates and deletes that make `published` equal `desired`, none
    of them to a name in `reserved` (a published slice of such a name is left as it is)."""
    blocked = set(reserved)
    published = [s for s in published if s.name not in blocked]
    if not desired:
        return _placeholder_plan(published, port_name, owner_uid)
    by_key: dict[SliceKey, list[PublishedSlice]] = defaultdict(list)
    doomed: list[PublishedSlice] = []  # slices with nothing left to hold
    for slc in sorted(published, key=lambda s: s.name):
        if slc.content is None or slc.content.key not in desired:
            doomed.append(slc)
        else:
            by_key[slc.content.key].append(slc)

    updates: dict[str, tuple[SliceKey, Members, str]] = {}
    unchanged: list[str] = []
    creates: list[tuple[SliceKey, Members]] = []
    for key in sorted(desired, key=_key_order):
        remaining = dict(desired[key])
        changed: dict[str, Members] = {}
        kept: dict[str, Members] = {}
        for slc in by_key.get(key, []):
            assert slc.content is not None
            held = slc.content.as_map()
            members = {ip: remaining.pop(ip) for ip in held if ip in remaining}
            active = [ip for ip, state in members.items() if not state.terminating]
            overflow = active[max_per_slice:] + list(members)[API_MAX_PER_SLICE:]
            for ip in overflow:  # max lowered: spill the excess back for placement
                if ip in members:
                    remaining[ip] = members.pop(ip)
            if not members:
                doomed.append(slc)
            elif (
                members == held
                and slc.content.port_name == port_name
                and slc.owner_uid == owner_uid
            ):
                kept[slc.name] = members
            else:
                changed[slc.name] = members
        versions = {slc.name: slc.resource_version for slc in by_key.get(key, [])}
        to_add = sorted(remaining, key=_ip_order)

        # 1. Fill slices that are written anyway.
        for name in sorted(changed):
            room = _room(changed[name], max_per_slice)
            for ip in to_add[:room]:
                changed[name][ip] = remaining[ip]
            to_add = to_add[room:]

        # 2. Then the fullest unchanged slice that can take all that is left, else new slices.
        while to_add:
            fits = [n for n, m in kept.items() if _room(m, max_per_slice) >= len(to_add)]
            if len(to_add) < max_per_slice and fits:
                name = max(fits, key=lambda n: (len(kept[n]), n))
                changed[name] = kept.pop(name)
                changed[name].update({ip: remaining[ip] for ip in to_add})
                to_add = []
                break
            chunk, to_add = to_add[:max_per_slice], to_add[max_per_slice:]
            creates.append((key, {ip: remaining[ip] for ip in chunk}))

        unchanged.extend(kept)
        for name, members in changed.items():
            updates[name] = (key, members, versions[name])

    taken = {s.name for s in published} | blocked
    return _finish(service, port_name, updates, unchanged, creates, doomed, taken)


def _placeholder_plan(
    published: Sequence[PublishedSlice], port_name: str, owner_uid: str
) -> SlicePlan:
    """No endpoints: keep one empty slice, as the upstream controller does, so the
    Service still has a slice that says "nothing here" rather than none at all."""
    readable = sorted((s for s in published if s.content is not None), key=lambda s: s.name)
    if not readable:
        return SlicePlan(delete=tuple(sorted(s.name for s in published)))
    keep = readable[0]
    assert keep.content is not None
    deletes = tuple(sorted(s.name for s in published if s.name != keep.name))
    empty = SliceContent(key=keep.content.key, port_name=port_name)
    if keep.content == empty and keep.owner_uid == owner_uid:
        return SlicePlan(delete=deletes, unchanged=(keep.name,))
    return SlicePlan(
        update=((DesiredSlice(keep.name, empty), keep.resource_version),), delete=deletes
    )


def _finish(
    service: str,
    port_name: str,
    updates: dict[str, tuple[SliceKey, Members, str]],
    unchanged: list[str],
    creates: list[tuple[SliceKey, Members]],
    doomed: list[PublishedSlice],
    taken: set[str],
) -> SlicePlan:
    """Turn create+delete pairs of one address family into updates, name new slices."""
    reusable: dict[AddressFamily, list[PublishedSlice]] = defaultdict(list)
    plain_deletes: list[str] = []
    for slc in doomed:
        if slc.content is not None:
            reusable[slc.content.key.family].append(slc)
        else:
            plain_deletes.append(slc.name)

    update_list = [
        (DesiredSlice(name, _content(key, port_name, members)), version)
        for name, (key, members, version) in sorted(updates.items())
    ]
    create_list: list[DesiredSlice] = []
    next_index: dict[AddressFamily, int] = defaultdict(int)
    for key, members in creates:
        content = _content(key, port_name, members)
        if reusable[key.family]:
            slc = reusable[key.family].pop(0)
            update_list.append((DesiredSlice(slc.name, content), slc.resource_version))
            continue
        while slice_name(service, key.family, next_index[key.family]) in taken:
            next_index[key.family] += 1
        name = slice_name(service, key.family, next_index[key.family])
        taken.add(name)
        create_list.append(DesiredSlice(name, content))

    deletes = plain_deletes + [s.name for leftover in reusable.values() for s in leftover]
    return SlicePlan(
        create=tuple(create_list),
        update=tuple(update_list),
        delete=tuple(sorted(deletes)),
        unchanged=tuple(sorted(unchanged)),
    )
