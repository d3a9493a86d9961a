"""Status and Events of one DirectService: written only when something the user should see
changed, so a steady state costs no API writes. Reads of a stored object tolerate any shape.

Status writes draw on an allowance (core/allowance.py: STATUS_BURST at once, then one per
STATUS_REFILL seconds), so a flapping discovery or a swinging load costs a bounded number of
writes a minute. A status that has to wait is asked for again (`defer`) once one is allowed;
it then says what is true at that moment, and its Events are the transitions since the last
status written.

A status whose only change is the process's Overloaded verdict also waits for a turn of one
allowance shared by every DirectService (`overload_turn`): the verdict turns for all of them
at once, and thousands of writes at the moment the operator is short of CPU would make it
shorter still. The next poll asks again; until then the status says what it said.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from directservice.api.names import Owner
from directservice.api.status import PollResult, next_status, status_differs
from directservice.core.allowance import Allowance
from directservice.obs import metrics
from directservice.obs.logs import ObjectLogger
from directservice.publish.writer import KubeWriter, WriteError

Body = Mapping[str, Any]
STATUS_BURST = 5
STATUS_REFILL = 6.0  # s: at most 5 + 10 status writes a minute per DirectService
FULL_ALLOWANCE = Allowance.full(STATUS_BURST, STATUS_REFILL)


def no_conflicts() -> tuple[str, ...]:
    return ()


@dataclass
class Reporter:
    owner: Owner
    writer: KubeWriter
    log: ObjectLogger
    # What is in the way, as the publisher sees it now (publisher.conflicts).
    conflicts: Callable[[], tuple[str, ...]] = no_conflicts
    shard: Callable[[], int | None] = lambda: None  # the shard it belongs to, when sharded
    # Asked to report again after this many seconds: a status that had to wait its turn.
    defer: Callable[[float], None] = lambda delay: None
    # May a status whose only change is the Overloaded verdict be written now?
    overload_turn: Callable[[], bool] = lambda: True
    _status: dict[str, Any] | None = field(default=None, repr=False)  # the last one written
    _allowance: Allowance = FULL_ALLOWANCE

    async def report(self, body: Body, result: PollResult) -> None:
        """Patch status if it differs, then post the Events of its transitions. A failed
        patch is retried with the next poll's result; a failed Event is dropped."""
        conflicts = self.conflicts()
        metrics.CONFLICTING_OBJECTS.set(self.owner.namespace, self.owner.name, len(conflicts))
        shard = self.shard()
        if conflicts != result.conflicts or shard != result.shard:  # replace() costs, per poll
            result = dataclasses.replace(result, conflicts=conflicts, shard=shard)
        old = self._status if self._status is not None else status_of(body)
        new, events = next_status(old, result)
        if status_differs(old, new):
            if self._only_overload_changed(old, result) and not self.overload_turn():
                metrics.STATUS_WRITES_DEFERRED.inc()
                return
            allowance, wait = self._allowance.spend(asyncio.get_running_loop().time())
            if wait > 0:
                metrics.STATUS_WRITES_DEFERRED.inc()
                self.defer(wait)
                return
            self._allowance = allowance
            try:
                await self.writer.patch_status(self.owner, new)
            except WriteError as exc:
                self.log.warning("status not written: %s", exc.message)
                return
        self._status = new
        for event in events:
            await self.writer.post_event(self.owner, event)

    @staticmethod
    def _only_overload_changed(old: Mapping[str, Any], result: PollResult) -> bool:
        if result.overloaded is None:
            return False
        without, _ = next_status(old, dataclasses.replace(result, overloaded=None))
        return not status_differs(old, without)


def generation_of(body: Body) -> int:
    meta = body.get("metadata")
    generation = meta.get("generation") if isinstance(meta, Mapping) else None
    return generation if isinstance(generation, int) and not isinstance(generation, bool) else 0


def status_of(body: Body) -> dict[str, Any]:
    status = body.get("status")
    return dict(status) if isinstance(status, Mapping) else {}


def reported_provider(body: Body) -> str:
    provider = status_of(body).get("provider")
    return provider if isinstance(provider, str) and provider else "unknown"
