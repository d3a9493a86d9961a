"""Apply: make one DirectService's Service and EndpointSlices match an accepted answer.

Current state comes from the watch-fed view plus an overlay of our own recent writes, so a
poll that runs before the watch event arrives neither writes again nor misreads the state.
The overlay never outlives the truth: a 404 on a write, or the watch's DELETED event for an
object (forget_service, forget_slice), drops it, so an object someone deleted is recreated
on the next poll.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.spec import DirectServiceSpec
from directservice.core.endpoints import Endpoint
from directservice.core.model import PublishedSlice, ServiceShape, SlicePlan
from directservice.core.planner import desired_endpoints, plan_slices
from directservice.publish.render import build_endpoint_slice, build_service, read_endpoint_slice
from directservice.publish.writer import KubeWriter, WriteError


class ClusterView(Protocol):
    """Current state, read from memory (kopf indexes), never from the API per poll."""

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]: ...

    def service(self, namespace: str, name: str) -> ServiceShape | None: ...


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

    def published_slices(self) -> list[PublishedSlice]:
        """The watch's view, corrected by our writes the watch has not delivered yet."""
        current = {s.name: s for s in self.view.slices(self.owner.namespace, self.owner.name)}
        for name, pending in list(self._overlay.items()):
            seen = current.get(name)
            if (seen.resource_version if seen else None) != pending.based_on:
                self._overlay.pop(name, None)  # the watch caught up (or someone else wrote)
            elif pending.result is None:
                current.pop(name, None)
            else:
                current[name] = pending.result
        return [current[name] for name in sorted(current)]

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
        writes = await self._ensure_service(shape)
        published = self.published_slices()
        plan = plan_slices(
            self.owner.name,
            desired_endpoints(endpoints, spec.port.app_protocol),
            published,
            port_name=spec.port.name,
            owner_uid=self.owner.uid,
            max_per_slice=spec.max_endpoints_per_slice,
        )
        await self._apply(plan, {s.name: s.resource_version for s in published})
        return writes + plan.writes

    async def _apply(self, plan: SlicePlan, versions: Mapping[str, str]) -> None:
        # Creates and updates before deletes: addresses never vanish in between.
        for desired in plan.create:
            answer = await self.writer.create_slice(build_endpoint_slice(self.owner, desired))
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
        if seen == shape or (seen is None and self._service_written == shape):
            return 0
        body = build_service(self.owner, shape)
        if seen is None and self._service_written is None:
            try:
                await self.writer.create_service(body)
            except WriteError as exc:
                if exc.status == 409:
                    raise WriteError(
                        Reason.PUBLISH_SERVICE_CONFLICT,
                        f"a Service named {self.owner.name} exists and is not managed by "
                        "this DirectService; delete or rename it",
                        409,
                    ) from None
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
        return 1
