"""Apply: make one DirectService's Service and EndpointSlices match an accepted answer.

Current state comes from the watch-fed view plus an overlay of our own recent writes, so a
poll that runs before the watch event arrives neither writes again nor misreads the state.
The overlay never outlives the truth: a 404 on a write, or the watch's DELETED event for an
object (forget_service, forget_slice), drops it, so an object someone deleted is recreated
on the next poll.

Tenancy: what the DirectService does not own (render.Foreign) is never modified or deleted.
A Service of its name that is not its own stops publishing and ends the poll in Conflict;
the DirectService's own slices are withdrawn, since they would feed that Service. Slice
names taken by others are never planned; a create refused as AlreadyExists (a slice the view
cannot show) ends the poll in Conflict too. conflicts() says what is in the way, for status,
an Event and a metric; a slice of another owner under our name is reported, never blocking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, runtime_checkable

from directservice.api.names import LABEL_SERVICE_NAME, Owner
from directservice.api.reasons import Reason
from directservice.api.spec import DirectServiceSpec
from directservice.core.endpoints import Endpoint
from directservice.core.model import PublishedSlice, ServiceShape, SlicePlan
from directservice.core.planner import desired_endpoints, plan_slices
from directservice.publish.render import (
    ENDPOINT_SLICE,
    SERVICE,
    Foreign,
    build_endpoint_slice,
    build_service,
    observe_service,
    observe_slice,
    read_endpoint_slice,
)
from directservice.publish.writer import KubeWriter, WriteError

LEFT_ALONE = (
    "it is left alone, and nothing is published until it is deleted or renamed (or the "
    "DirectService is renamed)"
)


class ClusterView(Protocol):
    """Current state, read from memory (kopf indexes), never from the API per poll."""

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]: ...

    def service(self, namespace: str, name: str) -> ServiceShape | None: ...


@runtime_checkable
class TenancyView(ClusterView, Protocol):
    """A view that also sees what carries a DirectService's name without being its own. A
    plain ClusterView sees none of it: a Service in the way is then found by a refused create."""

    def foreign(self, namespace: str, name: str) -> list[Foreign]: ...


@dataclass
class _Overlay:
    """Our own write, used until the watch shows the object moved past `based_on`."""

    based_on: str | None
    result: PublishedSlice | None


@dataclass
class Publisher:
    owner: Owner
    writer: KubeWriter
    view: ClusterView
    _overlay: dict[str, _Overlay] = field(default_factory=dict)
    _service_written: ServiceShape | None = None
    _service_gone: bool = False  # a write found our Service deleted; the view may lag
    _service_refused: str | None = None  # a create found a Service of our name, not ours
    _collisions: set[str] = field(default_factory=set)  # slice names a create found taken

    def __post_init__(self) -> None:
        self._tenancy = self.view if isinstance(self.view, TenancyView) else None

    def foreign(self) -> list[Foreign]:
        """What the view shows of our name that is not ours."""
        if self._tenancy is None:
            return []
        return self._tenancy.foreign(self.owner.namespace, self.owner.name)

    def conflicts(self) -> tuple[str, ...]:
        """What stands in the way or serves under our name without being ours, in words."""
        foreign = self.foreign()
        found = sorted(f.describe() for f in foreign)
        if self._service_refused and not any(f.kind == SERVICE for f in foreign):
            found.insert(0, self._service_refused)  # seen by a create only, not by the view
        return tuple(found)

    def published_slices(self) -> list[PublishedSlice]:
        """The watch's view, corrected by our writes the watch has not delivered yet."""
        current = {s.name: s for s in self.view.slices(self.owner.namespace, self.owner.name)}
        for other in self.foreign():  # e.g. our slice, relabelled by someone: no longer ours
            self._overlay.pop(other.name, None)
        for name, pending in list(self._overlay.items()):
            seen = current.get(name)
            if (seen.resource_version if seen else None) != pending.based_on:
                self._overlay.pop(name, None)  # the watch caught up (or someone else wrote)
            elif pending.result is None:
                current.pop(name, None)
            else:
                current[name] = pending.result
        return [current[name] for name in sorted(current)]

    def fingerprint(self) -> tuple[object, ...]:
        """What the cluster shows of ours and in our way, cheaply: equal fingerprints mean
        nobody touched our objects in between (every write changes a resourceVersion)."""
        ns, name = self.owner.namespace, self.owner.name
        slices = tuple((s.name, s.resource_version) for s in self.published_slices())
        return (slices, self.view.service(ns, name), self._service_written, self.conflicts())

    def service_pending(self) -> bool:
        """Whether we created or changed the Service and the watch has not shown it yet."""
        return self._service_written is not None

    def forget_service(self) -> None:
        """The watch saw our Service deleted: what we wrote is gone."""
        self._service_written = None
        self._service_gone = False  # the view has caught up

    def forget_slice(self, name: str) -> None:
        """The watch saw a slice deleted: any write of ours to it is gone too."""
        self._overlay.pop(name, None)

    async def publish(self, spec: DirectServiceSpec, endpoints: Sequence[Endpoint]) -> int:
        """Write what differs; returns the number of writes (0 in steady state)."""
        shape = ServiceShape(
            port_name=spec.port.name,
            port=spec.port.number or min(e.instance.port for e in endpoints),
            app_protocol=spec.port.app_protocol,
            owner_uid=self.owner.uid,
        )
        foreign = self.foreign()
        in_the_way = next((f for f in foreign if f.kind == SERVICE), None)
        if in_the_way is not None:
            self._service_refused = None
            await self._withdraw(in_the_way.describe())
        writes = await self._ensure_service(shape)
        published = self.published_slices()
        self._collisions -= {s.name for s in published}  # ours after all: the view lagged
        plan = plan_slices(
            self.owner.name,
            desired_endpoints(endpoints, spec.port.app_protocol),
            published,
            port_name=spec.port.name,
            owner_uid=self.owner.uid,
            max_per_slice=spec.max_endpoints_per_slice,
            reserved=self._collisions | {f.name for f in foreign if f.kind == ENDPOINT_SLICE},
        )
        await self._apply(plan, {s.name: s.resource_version for s in published})
        return writes + plan.writes

    async def _apply(self, plan: SlicePlan, versions: Mapping[str, str]) -> None:
        # Creates and updates before deletes: addresses never vanish in between.
        for desired in plan.create:
            try:
                answer = await self.writer.create_slice(build_endpoint_slice(self.owner, desired))
            except WriteError as exc:
                if exc.status == 409:  # AlreadyExists: a slice the view does not show is there
                    await self._unless_ours(ENDPOINT_SLICE, desired.name)
                    self._collisions.add(desired.name)
                    raise WriteError(
                        Reason.CONFLICT,
                        f"EndpointSlice {desired.name} exists and is not managed by "
                        "directservice.io: it is left alone, and the next poll publishes under "
                        "another name",
                    ) from None
                raise
            self._remember(desired.name, None, answer)
        for desired, version in plan.update:
            body = build_endpoint_slice(self.owner, desired)
            try:
                answer = await self.writer.replace_slice(body, version)
            except WriteError as exc:
                if exc.status == 404:  # deleted under us: recreate it on the next poll
                    self._overlay[desired.name] = _Overlay(based_on=version, result=None)
                raise
            self._remember(desired.name, version, answer)
        for name in plan.delete:
            await self.writer.delete_slice(self.owner.namespace, name, versions[name])
            self._overlay[name] = _Overlay(based_on=versions[name], result=None)

    def _remember(self, name: str, based_on: str | None, answer: Mapping[str, Any]) -> None:
        self._overlay[name] = _Overlay(based_on=based_on, result=read_endpoint_slice(answer))

    async def _ensure_service(self, shape: ServiceShape) -> int:
        seen = (
            None if self._service_gone else self.view.service(self.owner.namespace, self.owner.name)
        )
        if seen is not None:
            self._service_written = None  # the watch has caught up with our write
            self._service_refused = None
        if seen == shape or (seen is None and self._service_written == shape):
            return 0
        body = build_service(self.owner, shape)
        if seen is None and self._service_written is None:
            try:
                await self.writer.create_service(body)
            except WriteError as exc:
                if exc.status == 409:  # AlreadyExists, and not labelled as ours (the view)
                    await self._unless_ours(SERVICE, self.owner.name)
                    self._service_refused = (
                        f"Service {self.owner.name} exists and is not managed by directservice.io"
                    )
                    await self._withdraw(self._service_refused)
                raise
        else:
            body["spec"].setdefault("ports", None)  # merge patch: drop a port we removed
            try:
                await self.writer.patch_service(body)
            except WriteError as exc:
                if exc.status == 404:  # deleted under us: create it on the next poll
                    self._service_written, self._service_gone = None, True
                raise
        self._service_written, self._service_gone = shape, False
        self._service_refused = None
        return 1

    async def _unless_ours(self, kind: str, name: str) -> None:
        """A create was refused as AlreadyExists for an object the view does not show. Read
        it (the one read outside the watches, on this rare path) and raise a retryable
        error if it is ours after all: a replica that has just taken a shard over, on a busy
        loop, can be behind the API server, and the object is then the previous holder's
        work. Calling it foreign would withdraw our slices and rename them. Returns when it
        is not ours."""
        found = await self.writer.read(kind, self.owner.namespace, name)
        if found is None:
            return
        seen = observe_service(found) if kind == SERVICE else observe_slice(found)
        if isinstance(seen, ServiceShape) or (
            isinstance(seen, PublishedSlice)
            and (found.get("metadata") or {}).get("labels", {}).get(LABEL_SERVICE_NAME)
            == self.owner.name
        ):
            raise WriteError(
                Reason.PUBLISH_CONFLICT,
                f"{kind} {name} exists and is ours, but the watch has not shown it yet: will retry",
                409,
            )

    async def _withdraw(self, in_the_way: str) -> NoReturn:
        """A Service of our name is not ours: delete our own slices, which would feed it
        (kube-proxy and DNS take every slice labelled with its name), and say so."""
        published = self.published_slices()
        versions = {s.name: s.resource_version for s in published}
        note = ""
        try:
            await self._apply(SlicePlan(delete=tuple(sorted(versions))), versions)
        except WriteError as exc:  # the next poll tries again
            note = f" (its slices are not withdrawn yet: {exc.message})"
        raise WriteError(Reason.CONFLICT, f"{in_the_way}: {LEFT_ALONE}{note}")
