"""One pass of a DirectService's pipeline: discover → guard → shape traffic → publish.

The Reconciler decides when a pass runs and catches what escapes it; this holds what one
pass needs from the last: the shrink guard's pending answer, the accepted answer (which
health and drain changes re-publish between polls) and when discovery last answered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from directservice.api.names import Owner
from directservice.api.reasons import EventReason, Reason
from directservice.api.spec import DirectServiceSpec, format_duration
from directservice.api.status import EventSpec, PollResult
from directservice.controller.config import OperatorConfig
from directservice.controller.traffic import TrafficState
from directservice.core.endpoints import endpoint_text, is_excluded
from directservice.core.entries import drop_denied
from directservice.core.guard import (
    GuardState,
    ShrinkPolicy,
    answer_ids,
    check_shrink,
    published_ids,
)
from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery.addresses import AddressPolicy
from directservice.discovery.base import Provider
from directservice.discovery.httpclient import redact_url
from directservice.obs import metrics
from directservice.obs.logs import ObjectLogger
from directservice.publish.publisher import Publisher
from directservice.publish.writer import WriteError

if TYPE_CHECKING:
    from directservice.controller.reconciler import Shared


def poll_interval(spec: DirectServiceSpec, config: OperatorConfig) -> float:
    """spec.pollInterval, but never below the operator's floor."""
    return max(float(spec.poll_interval), config.min_poll_interval)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pipeline:
    owner: Owner
    shared: Shared
    log: ObjectLogger
    publisher: Publisher
    traffic: TrafficState
    provider: Provider | None = None
    guard: GuardState = field(default_factory=GuardState)
    published_source: object | None = None  # the provider spec behind what is published
    answer: Discovery | None = None  # the last accepted (published) answer
    answered_at: float = field(default_factory=time.monotonic)  # when discovery last answered
    # The cluster as it was right after `answer` was published; None: publish again.
    settled: tuple[object, ...] | None = None

    async def sync(
        self, spec: DirectServiceSpec, provider: Provider, generation: int, *, quiet: bool
    ) -> PollResult:
        """Discover, guard, publish. `quiet`: a failure continues an outage already logged."""
        self.provider = provider
        kind = spec.provider_kind
        started = time.monotonic()
        try:
            discovery = await self._discover(spec)
        except DiscoveryError as exc:
            metrics.child(metrics.DISCOVERY_REQUESTS, kind, exc.reason).inc()
            metrics.child(metrics.DISCOVERY_LATENCY, kind).observe(time.monotonic() - started)
            level = logging.DEBUG if quiet else logging.INFO  # once per outage
            self.log.log(level, "discovery failed: %s: %s", exc.reason, exc.message)
            return PollResult(
                generation, kind, utc_now(), failure_reason=exc.reason,
                failure_message=exc.message, retry_after=exc.retry_after,
            )  # fmt: skip
        metrics.child(metrics.DISCOVERY_REQUESTS, kind, "ok").inc()
        metrics.child(metrics.DISCOVERY_LATENCY, kind).observe(time.monotonic() - started)
        self.answered_at = asyncio.get_running_loop().time()
        if discovery is self.answer and self.settled == self.publisher.fingerprint():
            # The provider handed back the answer it parsed last time (same bytes), nothing
            # of ours changed since it was published, and no traffic change is pending:
            # guard, traffic and plan would all find nothing to do.
            return self._success(spec, generation, discovery, 0)

        verdict = check_shrink(
            published_ids(self.publisher.published_slices()),
            answer_ids(discovery.instances),
            ShrinkPolicy(spec.max_shrink_percent, spec.shrink_confirmations),
            self.guard,
            source_changed=self.published_source not in (None, spec.provider),
        )
        self.guard = verdict.state
        if not verdict.apply:
            self.log.info("holding a shrinking answer: %s", verdict.message)
            return PollResult(
                generation, kind, utc_now(), failure_reason=Reason.SHRINK_HELD,
                failure_message=verdict.message,
            )  # fmt: skip
        try:
            writes = await self.publish(spec, discovery)
        except WriteError as exc:
            self.log.warning("publishing failed: %s", exc.message)
            return PollResult(
                generation, kind, utc_now(), blocked_reason=exc.reason,
                blocked_message=exc.message,
            )  # fmt: skip
        self.published_source = spec.provider
        if verdict.confirmed_shrink:
            await self.shared.writer.post_event(
                self.owner, EventSpec("Normal", EventReason.SHRINK_APPLIED, verdict.message)
            )
        return self._success(spec, generation, discovery, writes)

    async def publish(self, spec: DirectServiceSpec, discovery: Discovery) -> int:
        """Publish `discovery` as traffic state shapes it; it becomes the accepted answer."""
        self.settled = None  # until this publish has succeeded
        outcome = self.traffic.plan(
            spec,
            discovery.instances,
            self.publisher.published_slices(),
            asyncio.get_running_loop().time(),
        )
        writes = await self.publisher.publish(spec, outcome.composition.endpoints)
        self.answer = discovery
        self.settled = self.publisher.fingerprint()
        return writes

    def annotate(
        self, spec: DirectServiceSpec, result: PollResult, *, overloaded: bool | None = None
    ) -> PollResult:
        """Add what traffic state, staleness and the loop's lateness say to a poll's result."""
        stale: bool | None = None
        if spec.max_staleness is not None:
            answered = self.answered_at or 0.0
            stale = asyncio.get_running_loop().time() - answered > spec.max_staleness
        # 0 when unset too: a gauge left at 1 would keep the alert firing after the edit.
        metrics.DISCOVERY_STALE.set(self.owner.namespace, self.owner.name, int(bool(stale)))
        check = spec.health_check
        return dataclasses.replace(
            result,
            panic=self.traffic.panic if check is not None else None,
            panic_threshold=check.panic_threshold_percent if check is not None else 50,
            stale=stale,
            max_staleness=format_duration(spec.max_staleness) if spec.max_staleness else "",
            overloaded=overloaded,
        )

    def _success(
        self, spec: DirectServiceSpec, generation: int, discovery: Discovery, writes: int
    ) -> PollResult:
        excluded = [inst for inst in discovery.instances if is_excluded(inst, spec.exclude)]
        ready = sum(1 for inst in discovery.instances if inst.serving) - sum(
            1 for inst in excluded if inst.serving
        )
        total = len(discovery.instances)
        metrics.record_success(
            self.owner.namespace, self.owner.name, ready, total, len(discovery.dropped)
        )
        if writes:
            self.log.info("published %d endpoints (%d ready) in %d writes", total, ready, writes)
        assert self.provider is not None
        interval = poll_interval(spec, self.shared.config)
        effective = self.provider.effective_interval(interval)
        stretched = effective > interval + 0.5
        return PollResult(
            generation,
            spec.provider_kind,
            utc_now(),
            ready=ready,
            total=total,
            published_changed=writes > 0,
            dropped=len(discovery.dropped),
            dropped_names=tuple(f"{d.entry} ({d.reason})" for d in discovery.dropped[:10]),
            effective_interval=format_duration(effective) if stretched else None,
            rate_limited_message=self._stretch_message(interval, effective) if stretched else None,
            excluded=tuple(sorted(endpoint_text(inst.ip, inst.port) for inst in excluded)),
        )

    def _stretch_message(self, interval: float, effective: float) -> str:
        assert self.provider is not None
        members, calls = self.provider.sharing()
        return (
            f"{members} DirectServices share a budget of {calls or 0:g} calls/min; "
            f"polling every {format_duration(effective)} instead of {format_duration(interval)}"
        )

    async def _discover(self, spec: DirectServiceSpec) -> Discovery:
        """Discovery within the operator's bounds: every URL's host allowed for its provider,
        every address connected to allowed (the restricted client), and nothing published
        in the cluster's own networks."""
        assert self.provider is not None
        config, kind = self.shared.config, spec.provider_kind
        for url in spec.provider.discovery_urls():
            if not config.host_allowed(kind, url):
                raise DiscoveryError(
                    Reason.HOST_NOT_ALLOWED,
                    f"{redact_url(url)} is not among the operator's allowed hosts for {kind}",
                )
        http = self.shared.http.restricted(AddressPolicy(config.discovery_cidrs))
        return drop_denied(await self.provider.discover(http), config.denied_networks())
