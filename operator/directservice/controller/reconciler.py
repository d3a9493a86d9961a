"""One DirectService's poll loop: discover → guard → publish → status.

Polls run one at a time per DirectService (so at most one fetch is in flight), draw from
the credential's shared rate budget, back off on failure and wake early on a spec edit.
State is in memory: the Publisher's view of what is published, the shrink guard's
pending answer, and the last status written.

The loop is the error boundary: nothing a discovery server, a Secret, a DirectService or the
API server sends ends it. An exception nobody foresaw becomes reason InternalError for that
poll (one Event on the transition, a metric, one log line with the traceback), and what is
published stays exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.spec import DirectServiceSpec, SpecError, check_service_name
from directservice.api.status import PollResult
from directservice.controller.config import OperatorConfig
from directservice.controller.election import Ownership
from directservice.controller.looplag import LoopLoad
from directservice.controller.pipeline import Pipeline, poll_interval, utc_now
from directservice.controller.reporter import Body, Reporter, generation_of, reported_provider
from directservice.controller.traffic import TrafficState
from directservice.controller.wakeup import Wakeup
from directservice.core.model import InternalError, summarize
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.base import Provider
from directservice.discovery.budget import RateBudgets, backoff_delay
from directservice.discovery.credentials import SecretReader, TokenCache, no_secrets
from directservice.discovery.httpclient import HttpClient
from directservice.health.checker import Checks
from directservice.obs import metrics
from directservice.obs.logs import ObjectLogger
from directservice.publish.publisher import ClusterView, Publisher
from directservice.publish.writer import FENCE, Fenced, KubeWriter, WriteError

log = logging.getLogger(__name__)

MAX_START_JITTER = 10.0
INVALID_SPEC_RETRY = 30.0  # an edit wakes the loop at once; this only re-reports
CLOSE_GRACE = 3.0  # how long a deletion waits for a poll in flight before cancelling it
# One generator for every poll loop of the process: a Random holds 2.5 KiB of state, and the
# loops need independent jitter, not independent streams.
_JITTER = random.Random()


class Stopped(Protocol):
    """kopf's daemon stop flag: false until the daemon should end."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[object]: ...


@dataclass
class Shared:
    """What every DirectService of one operator process shares."""

    writer: KubeWriter
    http: HttpClient
    view: ClusterView
    config: OperatorConfig = field(default_factory=OperatorConfig)
    budgets: RateBudgets | None = None
    tokens: TokenCache = field(default_factory=TokenCache)
    secrets: SecretReader = no_secrets
    health: Checks | None = None  # one checker for every DirectService
    ownership: Ownership = field(default_factory=Ownership)  # standalone: serves everything
    load: LoopLoad = field(default_factory=LoopLoad)  # the process's Overloaded verdict


@dataclass
class Reconciler:
    owner: Owner
    shared: Shared
    rng: random.Random = _JITTER
    failures: int = 0
    closed: bool = False
    wake: Wakeup = field(default_factory=Wakeup)  # set by an edit, a stop or close()
    _busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    _in_flight: asyncio.Future[float] | None = None  # the poll running now
    _spec_source: Any = None
    _spec: DirectServiceSpec | None = None
    _provider: Provider | None = None
    _last_result: PollResult | None = None
    _get_body: Callable[[], Body] | None = None
    _refresh_pending: bool = False
    _report_timer: asyncio.TimerHandle | None = None  # a status that waits for its turn
    _awaiting_first_pass: bool = False  # counted in shared.load.first_passes
    shard: int = 0  # of the shard key of the spec parsed last (the owner's key before)

    def __post_init__(self) -> None:
        self.log = ObjectLogger(log, self.owner.namespace, self.owner.name)
        self.shard = self.shared.ownership.shard_of(self.owner.key)
        self._fresh_state()

    def _fresh_state(self) -> None:
        """What one replica knows of the object: rebuilt when it starts serving it again,
        since another replica may have written meanwhile (the indexes tell the truth)."""
        self.publisher = Publisher(self.owner, self.shared.writer, self.shared.view)
        self.reporter = Reporter(
            self.owner,
            self.shared.writer,
            self.log,
            conflicts=self.publisher.conflicts,
            shard=lambda: self.shard if self.shared.ownership.shards > 1 else None,
            defer=self._report_later,
            overload_turn=self.shared.load.report_turn,
        )
        self.traffic = TrafficState(self.owner, self.shared.health, self.request_refresh)
        self.pipeline = Pipeline(self.owner, self.shared, self.log, self.publisher, self.traffic)

    # -- the loop ----------------------------------------------------------------

    async def run(self, get_body: Callable[[], Body], stopped: Stopped) -> None:
        """Poll until `stopped` (kopf's daemon flag) or close(). A spec edit sets `wake`."""
        metrics.track(self.owner.namespace, self.owner.name)
        self._get_body = get_body
        FENCE.set(self.may_write)  # this task's writes, and the tasks it starts
        self.pipeline.answered_at = asyncio.get_running_loop().time()
        # One task for the daemon's life, so that a sleep needs none to notice the stop.
        stop_watch = asyncio.ensure_future(stopped.wait())
        stop_watch.add_done_callback(lambda _: self.wake.set())
        self._first_pass_pending(True)
        try:
            # Spread the fleet's polls; capped so a long interval cannot delay the first sync.
            start = self.rng.uniform(0, min(self._interval_of(get_body()), MAX_START_JITTER))
            await self._sleep(start)
            while not stopped and not self.closed:
                if not self.may_write():
                    self._first_pass_pending(False)  # a standby makes none
                    await self._stand_by(stopped)
                    self._first_pass_pending(self.may_write())  # a shard taken over
                    continue
                async with self._busy:
                    if self.closed:
                        break
                    self.wake.clear()  # an edit during this poll wakes the next one
                    started = asyncio.get_running_loop().time()
                    with self.shared.ownership.passing(self.shard):
                        self._in_flight = asyncio.ensure_future(self.poll_once(get_body()))
                        try:
                            delay = await self._in_flight
                        except asyncio.CancelledError:
                            if self.closed and self._in_flight.cancelled():
                                break  # close() gave up waiting for this poll
                            raise
                self._first_pass_pending(False)
                behind = 0.0  # how far past its due time the next poll already is
                if self.failures == 0:  # on pace, the interval runs from start to start;
                    # a backoff runs from the failure's end
                    spent = asyncio.get_running_loop().time() - started
                    behind, delay = max(0.0, spent - delay), max(0.0, delay - spent)
                late = await self._sleep(delay)
                if late is not None:
                    self.shared.load.poll_started(late + behind, self._pace())
        finally:
            self._first_pass_pending(False)
            stop_watch.cancel()
            # Metric series stay: they live as long as the DirectService (handlers.forget).
            if self._report_timer is not None:
                self._report_timer.cancel()
                self._report_timer = None
            self.traffic.close()
            if self._provider is not None:
                self._provider.close()  # gives the budget seat back
                self._provider = None

    def _first_pass_pending(self, pending: bool) -> None:
        """Counted in the process's load: polls made meanwhile judge no overload."""
        if pending != self._awaiting_first_pass:
            self._awaiting_first_pass = pending
            self.shared.load.first_passes += 1 if pending else -1

    def may_write(self) -> bool:
        """Does this replica serve the DirectService now? Asked before every write."""
        return not self.closed and self.shared.ownership.serving(self.shard)

    async def _stand_by(self, stopped: Stopped) -> None:
        """Another replica serves this DirectService: poll nothing, check nothing, and start
        afresh from the indexes when the shard is ours again."""
        self.traffic.close()
        ownership = self.shared.ownership
        while not stopped and not self.closed and not self.may_write():
            self._parse_quietly()  # a spec edit may move it to a shard we hold
            if self.may_write():
                break
            await ownership.changed(within=1.0)
        if self.may_write():
            self._fresh_state()
            self.log.info("serving it (shard %d)", self.shard)

    def _parse_quietly(self) -> None:
        if self._get_body is None:
            return
        with contextlib.suppress(Exception):  # the serving replica's first poll reports it
            self._parse(self._get_body())

    async def close(self) -> None:
        """Stop polling and wait out a poll in flight (cancelling it after CLOSE_GRACE, e.g.
        when it queues on a shared budget), so nothing is written after the deletion
        handler has cleaned up."""
        self.closed = True
        self.wake.set()
        self.traffic.close()
        poll = self._in_flight
        if poll is not None and not poll.done():
            done, _ = await asyncio.wait({poll}, timeout=CLOSE_GRACE)
            if not done:
                poll.cancel()
        async with self._busy:
            pass

    async def _sleep(self, delay: float) -> float | None:
        """Until `delay` has passed, an edit or the stop; how late it woke when the time ran
        out (None when woken early)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        if await self.wake.sleep(delay):
            return None
        return max(0.0, loop.time() - due)

    def _pace(self) -> float:
        return self.interval(self._spec) if self._spec is not None else 5.0

    def _interval_of(self, body: Body) -> float:
        try:
            return self.interval(self._parse(body))
        except Exception:  # the first poll reports it; here only the start jitter needs it
            return 5.0

    def interval(self, spec: DirectServiceSpec) -> float:
        return poll_interval(spec, self.shared.config)

    def spec_edited(self, source: object) -> bool:
        """Does `source` differ from the spec the loop last parsed (none yet: no)?"""
        return self._spec_source is not None and source != self._spec_source

    def _parse(self, body: Body) -> DirectServiceSpec:
        source = body.get("spec")
        if self._spec is None or source != self._spec_source:
            check_service_name(self.owner.name)
            spec = parse_spec(source)
            if self._provider is not None:
                self._provider.close()
                self._provider = None
            self._provider = provider_for(
                spec,
                namespace=self.owner.namespace,
                secrets=self.shared.secrets,
                token_cache=self.shared.tokens,
                budgets=self.shared.budgets,
                member_id=self.owner.key,
            )
            # A copy: kopf's body is live, so a reference would always equal the next spec.
            self._spec, self._spec_source = spec, copy.deepcopy(source)
            key = self._provider.shard_key or self.owner.key
            self.shard = self.shared.ownership.shard_of(key)
        return self._spec

    # -- one poll ------------------------------------------------------------------

    async def poll_once(self, body: Body) -> float:
        """One poll; returns the delay until the next one. Never raises (but cancellation)."""
        try:
            return await self._poll(body)
        except asyncio.CancelledError:
            raise
        except Fenced:  # the shard moved during this pass: the loop stands by
            return 0.0
        except Exception as exc:  # the error boundary
            return await self._internal_error(body, exc)

    async def _poll(self, body: Body) -> float:
        generation = generation_of(body)
        try:
            spec = self._parse(body)
        except SpecError as exc:
            self._spec = None
            self._spec_source = copy.deepcopy(body.get("spec"))  # an edit of it wakes the loop
            result = PollResult(
                generation, reported_provider(body), utc_now(),
                blocked_reason=Reason.INVALID_SPEC, blocked_message=str(exc),
            )  # fmt: skip
            await self.reporter.report(body, result)
            return INVALID_SPEC_RETRY
        assert self._provider is not None
        synced = await self.pipeline.sync(spec, self._provider, generation, quiet=self.failures > 0)
        result = self.pipeline.annotate(spec, synced, overloaded=self.shared.load.overloaded)
        await self.reporter.report(body, result)
        self._last_result = result
        interval = self.interval(spec)
        if result.failure_reason == Reason.SHRINK_HELD:  # not a failure: confirm at the pace
            return interval
        if result.blocked_reason == Reason.PUBLISH_UNAVAILABLE:
            # The API server is down: retrying costs it nothing, and catching up within one
            # interval of its return matters more than sparing a discovery call.
            self.failures += 1
            return interval
        if result.failure_reason or result.blocked_reason:
            self.failures += 1
            return backoff_delay(interval, self.failures, self.rng, result.retry_after)
        self.failures = 0
        assert self._provider is not None
        return self._provider.effective_interval(interval) * self.rng.uniform(0.95, 1.05)

    async def _internal_error(self, body: Body, exc: Exception) -> float:
        safe = exc.message if isinstance(exc, InternalError) else summarize(exc)
        trace = exc.trace if isinstance(exc, InternalError) else None
        if trace is not None:
            self.log.error("internal error in a poll: %s\nTraceback (frames):\n%s", safe, trace)
        else:
            self.log.error("internal error in a poll: %s", safe, exc_info=exc)
        metrics.INTERNAL_ERRORS.labels(self.owner.namespace, self.owner.name).inc()
        self.failures += 1
        result = PollResult(
            generation_of(body), reported_provider(body), utc_now(),
            blocked_reason=Reason.INTERNAL_ERROR, blocked_message=safe,
        )  # fmt: skip
        try:
            await self.reporter.report(body, result)
        except Exception as report_exc:  # a status we cannot even build: say so, go on
            self.log.error("status not written: %s", summarize(report_exc), exc_info=report_exc)
        interval = self._spec.poll_interval if self._spec else 5.0
        return backoff_delay(
            max(interval, self.shared.config.min_poll_interval), self.failures, self.rng
        )

    # -- between polls -------------------------------------------------------------

    def _report_later(self, delay: float) -> None:
        """The status had to wait for the allowance: report again once one is allowed (a
        poll in between may do it first; the timer then finds nothing to write)."""
        if self._report_timer is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._report_timer = loop.call_later(delay, self._report_due)

    def _report_due(self) -> None:
        self._report_timer = None
        self.request_refresh()

    def request_refresh(self) -> None:
        """A health verdict turned or a drain ended: re-publish the accepted answer soon
        (once for any number of requests made before it runs)."""
        self.pipeline.settled = None  # what is published no longer is what would be
        if self.closed or self._refresh_pending:
            return
        self._refresh_pending = True
        asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        FENCE.set(self.may_write)  # started from the health checker's task, not ours
        try:
            async with self._busy:
                self._refresh_pending = False  # a change from here on asks again
                spec, answer, last = self._spec, self.pipeline.answer, self._last_result
                if not self.may_write() or spec is None or answer is None:
                    return
                try:
                    await self.pipeline.publish(spec, answer)
                except WriteError as exc:  # the next poll publishes again
                    self.log.warning("re-publishing failed: %s", exc.message)
                    return
                if last is not None and self._get_body is not None:
                    # Not a discovery change: lastSuccessfulSync stays, even when the poll
                    # before this refresh had published one.
                    refreshed = dataclasses.replace(last, now=utc_now(), published_changed=False)
                    result = self.pipeline.annotate(
                        spec, refreshed, overloaded=self.shared.load.overloaded
                    )
                    await self.reporter.report(self._get_body(), result)
                    self._last_result = result
        except Fenced:
            return
        except Exception as exc:  # the error boundary holds between polls too
            self.log.error("internal error re-publishing: %s", summarize(exc), exc_info=exc)
            metrics.INTERNAL_ERRORS.labels(self.owner.namespace, self.owner.name).inc()
