"""One DirectService's poll loop: discover → desired → plan → apply → status.

State lives in memory: the published slices come from a watch-fed view plus an
overlay of our own recent writes (so a poll that runs before the watch event
arrives does not write again), and the last status we wrote.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from directservice import metrics
from directservice.config import OperatorConfig
from directservice.httpclient import HttpClient
from directservice.kube import KubeWriter, WriteError
from directservice.logs import ObjectLogger
from directservice.model import Discovery, DiscoveryError, PublishedSlice, SlicePlan
from directservice.planner import desired_endpoints, plan_slices
from directservice.providers import Provider, provider_for
from directservice.render import (
    Owner,
    ServiceShape,
    build_endpoint_slice,
    build_service,
    read_endpoint_slice,
)
from directservice.spec import DirectServiceSpec, SpecError, check_service_name, parse_spec
from directservice.status import PollResult, next_status, status_differs

log = logging.getLogger(__name__)

BACKOFF_CAP_FACTOR = 8  # failures back off up to 8 poll intervals (at most MAX_BACKOFF)
MAX_BACKOFF = 300.0
MAX_START_JITTER = 10.0


class ClusterView(Protocol):
    """Current state, read from memory (kopf indexes), never from the API per poll."""

    def slices(self, namespace: str, name: str) -> list[PublishedSlice]: ...

    def service(self, namespace: str, name: str) -> ServiceShape | None: ...


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backoff_delay(interval: float, failures: int, rng: random.Random) -> float:
    """Exponential backoff with jitter, capped; zero failures is the plain interval."""
    if failures <= 0:
        return interval
    ceiling = min(interval * BACKOFF_CAP_FACTOR, max(MAX_BACKOFF, interval))
    base: float = min(interval * 2.0 ** (failures - 1), ceiling)
    return base * rng.uniform(0.8, 1.0)


@dataclass
class _Overlay:
    """Our own write, used until the watch shows the object moved past `based_on`."""

    based_on: str | None
    result: PublishedSlice | None


@dataclass
class Reconciler:
    owner: Owner
    writer: KubeWriter
    http: HttpClient
    view: ClusterView
    config: OperatorConfig = field(default_factory=OperatorConfig)
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0
    _spec_source: Mapping[str, Any] | None = None
    _spec: DirectServiceSpec | None = None
    _provider: Provider | None = None
    _status: dict[str, Any] | None = None
    _overlay: dict[str, _Overlay] = field(default_factory=dict)
    _service_written: ServiceShape | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.log = ObjectLogger(log, self.owner.namespace, self.owner.name)

    # -- the loop ----------------------------------------------------------------

    async def run(self, get_body: Callable[[], Mapping[str, Any]], stopped: Any) -> None:
        """Poll until `stopped` (kopf's daemon flag). A spec change sets `wake`."""
        metrics.track(self.owner.namespace, self.owner.name)
        try:
            interval = self._interval_of(get_body())
            # Spread the fleet's polls; cap it so a long interval cannot delay the first sync.
            await self._sleep(self.rng.uniform(0, min(interval, MAX_START_JITTER)), stopped)
            while not stopped and not self.closed:
                async with self._busy:
                    if self.closed:
                        break
                    self.wake.clear()  # an edit during this poll wakes the next one
                    delay = await self.poll_once(get_body())
                await self._sleep(delay, stopped)
        finally:
            metrics.forget(self.owner.namespace, self.owner.name)

    async def close(self) -> None:
        """Stop polling and wait out a poll in flight, so nothing is written after the
        deletion handler has cleaned up."""
        self.closed = True
        self.wake.set()
        async with self._busy:
            pass

    async def _sleep(self, delay: float, stopped: Any) -> None:
        waiters = [
            asyncio.ensure_future(self.wake.wait()),
            asyncio.ensure_future(stopped.wait()),
        ]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def _interval_of(self, body: Mapping[str, Any]) -> float:
        try:
            return self.interval(self._parse(body))
        except SpecError:
            return 5.0

    def interval(self, spec: DirectServiceSpec) -> float:
        return max(float(spec.poll_interval), self.config.min_poll_interval)

    def _parse(self, body: Mapping[str, Any]) -> DirectServiceSpec:
        source = body.get("spec") or {}
        if self._spec is None or source != self._spec_source:
            check_service_name(self.owner.name)
            self._spec = parse_spec(source)
            self._spec_source = dict(source)
            self._provider = provider_for(self._spec)
        return self._spec

    # -- one poll ------------------------------------------------------------------

    async def poll_once(self, body: Mapping[str, Any]) -> float:
        """One poll; returns the delay until the next one."""
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        try:
            spec = self._parse(body)
        except SpecError as exc:
            self._spec = None
            await self._report(
                body,
                PollResult(
                    generation,
                    str((body.get("status") or {}).get("provider") or "unknown"),
                    utc_now(),
                    blocked_reason="InvalidSpec",
                    blocked_message=str(exc),
                ),
            )
            return 30.0
        assert self._provider is not None
        result = await self._sync(spec, generation)
        await self._report(body, result)
        if result.failure_reason or result.blocked_reason:
            self.failures += 1
            return backoff_delay(self.interval(spec), self.failures, self.rng)
        self.failures = 0
        return self.interval(spec) * self.rng.uniform(0.95, 1.05)

    async def _sync(self, spec: DirectServiceSpec, generation: int) -> PollResult:
        assert self._provider is not None
        kind = spec.provider_kind
        started = time.monotonic()
        try:
            discovery = await self._discover(spec)
        except DiscoveryError as exc:
            metrics.DISCOVERY_REQUESTS.labels(kind, exc.reason).inc()
            metrics.DISCOVERY_LATENCY.labels(kind).observe(time.monotonic() - started)
            level = logging.INFO if self.failures == 0 else logging.DEBUG  # once per outage
            self.log.log(level, "discovery failed: %s: %s", exc.reason, exc.message)
            return PollResult(
                generation, kind, utc_now(), failure_reason=exc.reason, failure_message=exc.message
            )
        metrics.DISCOVERY_REQUESTS.labels(kind, "ok").inc()
        metrics.DISCOVERY_LATENCY.labels(kind).observe(time.monotonic() - started)
        try:
            writes = await self._publish(spec, discovery)
        except WriteError as exc:
            self.log.warning("publishing failed: %s", exc.message)
            return PollResult(
                generation,
                kind,
                utc_now(),
                blocked_reason=f"Publish{exc.reason}",
                blocked_message=exc.message,
            )
        ready = sum(1 for inst in discovery.instances if inst.serving)
        metrics.record_success(
            self.owner.namespace,
            self.owner.name,
            ready,
            len(discovery.instances),
            len(discovery.dropped),
        )
        if writes:
            self.log.info(
                "published %d endpoints (%d ready) in %d writes",
                len(discovery.instances),
                ready,
                writes,
            )
        return PollResult(
            generation,
            kind,
            utc_now(),
            ready=ready,
            total=len(discovery.instances),
            published_changed=writes > 0,
            dropped=len(discovery.dropped),
            dropped_names=tuple(f"{d.entry} ({d.reason})" for d in discovery.dropped[:10]),
        )

    async def _discover(self, spec: DirectServiceSpec) -> Discovery:
        assert self._provider is not None
        url = getattr(spec.provider, "endpoint", None) or getattr(spec.provider, "url", None)
        if url and not self.config.host_allowed(str(url)):
            raise DiscoveryError(
                "HostNotAllowed",
                f"discovery host of {url} is not in the operator's allowed hosts",
            )
        return await self._provider.discover(self.http)

    # -- apply ---------------------------------------------------------------------

    def published_slices(self) -> list[PublishedSlice]:
        """The watch's view, corrected by our writes the watch has not delivered yet."""
        current = {s.name: s for s in self.view.slices(self.owner.namespace, self.owner.name)}
        for name, pending in list(self._overlay.items()):
            seen = current.get(name)
            if (seen.resource_version if seen else None) != pending.based_on:
                del self._overlay[name]  # the watch caught up (or someone else wrote)
            elif pending.result is None:
                current.pop(name, None)
            else:
                current[name] = pending.result
        return [current[name] for name in sorted(current)]

    async def _publish(self, spec: DirectServiceSpec, discovery: Discovery) -> int:
        desired = desired_endpoints(discovery.instances, spec.port.app_protocol)
        ports = [inst.port for inst in discovery.instances]
        shape = ServiceShape(
            port_name=spec.port.name,
            port=spec.port.number or min(ports),
            app_protocol=spec.port.app_protocol,
            owner_uid=self.owner.uid,
        )
        writes = await self._ensure_service(shape)
        published = self.published_slices()
        plan = plan_slices(
            self.owner.name,
            desired,
            published,
            port_name=spec.port.name,
            owner_uid=self.owner.uid,
            max_per_slice=spec.max_endpoints_per_slice,
        )
        versions = {s.name: s.resource_version for s in published}
        await self._apply(plan, versions)
        return writes + plan.writes

    async def _apply(self, plan: SlicePlan, versions: Mapping[str, str]) -> None:
        # Creates and updates before deletes: addresses never vanish in between.
        for desired in plan.create:
            answer = await self.writer.create_slice(build_endpoint_slice(self.owner, desired))
            self._remember(desired.name, None, answer)
        for desired, version in plan.update:
            body = build_endpoint_slice(self.owner, desired)
            answer = await self.writer.replace_slice(body, version)
            self._remember(desired.name, version, answer)
        for name in plan.delete:
            await self.writer.delete_slice(self.owner.namespace, name, versions[name])
            self._overlay[name] = _Overlay(based_on=versions[name], result=None)

    def _remember(self, name: str, based_on: str | None, answer: Mapping[str, Any]) -> None:
        self._overlay[name] = _Overlay(based_on=based_on, result=read_endpoint_slice(answer))

    async def _ensure_service(self, shape: ServiceShape) -> int:
        seen = self.view.service(self.owner.namespace, self.owner.name)
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
                        "ServiceConflict",
                        f"a Service named {self.owner.name} exists and is not managed by "
                        "this DirectService; delete or rename it",
                    ) from None
                raise
        else:
            body["spec"].setdefault("ports", None)  # merge patch: drop a port we removed
            await self.writer.patch_service(body)
        self._service_written = shape
        return 1

    # -- status --------------------------------------------------------------------

    async def _report(self, body: Mapping[str, Any], result: PollResult) -> None:
        old = self._status if self._status is not None else dict(body.get("status") or {})
        new, events = next_status(old, result)
        if status_differs(old, new):
            try:
                await self.writer.patch_status(self.owner, new)
            except WriteError as exc:
                self.log.warning("status not written: %s", exc.message)
                return
        self._status = new
        for event in events:
            await self.writer.post_event(self.owner, event)
