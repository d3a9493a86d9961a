"""Lease election on the operator's event loop: which shards this replica serves.

One asyncio task (no threads) reads the shard Leases once per retry period, renews those it
holds, claims free or expired ones up to a fair share and releases what is beyond it. The
decisions are core/leases.py's; the reads and writes publish/leases.py's.

`Ownership` is what the poll loops ask before every pass and what the writer's fence asks
before every write (controller/reconciler.py): a shard is served only while its last renewal
is younger than the renew deadline, on this replica's own clock, whatever the elector task is
doing. A standby keeps its kopf watches and indexes, so a takeover writes nothing that did not
change. A graceful stop stops serving, lets the passes in flight end, then frees the Leases.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from directservice.core.leases import (
    LeaseRecord,
    Sighting,
    Timing,
    fair_share,
    live_members,
    observe,
    orphaned,
    plan_claims,
    serving,
    shard_of,
)
from directservice.obs import metrics
from directservice.publish.leases import Lease, LeaseClient
from directservice.publish.writer import WriteError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
RELEASE_GRACE = 3.0  # s a release waits for the passes in flight of its shard


@dataclass
class Ownership:
    """The shards this replica serves now. Standalone (no election): every shard, always."""

    shards: int = 1
    timing: Timing | None = None  # None: standalone
    clock: Clock = time.monotonic
    renewed: dict[int, float] = field(default_factory=dict)  # shard -> last renewal started
    _active: dict[int, int] = field(default_factory=dict)  # passes in flight per shard
    _idle: dict[int, asyncio.Event] = field(default_factory=dict)  # set: none in flight
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def standalone(self) -> bool:
        return self.timing is None

    def shard_of(self, key: str) -> int:
        return shard_of(key, self.shards)

    def serving(self, shard: int) -> bool:
        if self.timing is None:
            return True
        return serving(self.renewed.get(shard), self.clock(), self.timing)

    def held(self) -> set[int]:
        return {s for s in range(self.shards) if self.serving(s)}

    def grant(self, shard: int, renewed: float) -> None:
        new = not self.serving(shard)
        self.renewed[shard] = renewed
        if new:
            self._pulse()

    def revoke(self, shard: int) -> None:
        if self.renewed.pop(shard, None) is not None:
            self._pulse()

    def _pulse(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        metrics.SHARDS_HELD.set(len(self.held()))

    async def changed(self, within: float) -> None:
        """Wait for a grant or revoke, at most `within` s (expiry happens without an event)."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), within)

    @contextmanager
    def passing(self, shard: int) -> Iterator[None]:
        """Mark a pass in flight, so a release waits for it before freeing the Lease."""
        self._active[shard] = self._active.get(shard, 0) + 1
        self._idle.setdefault(shard, asyncio.Event()).clear()
        try:
            yield
        finally:
            self._active[shard] -= 1
            if not self._active[shard]:
                self._idle[shard].set()

    async def drained(self, shard: int, within: float) -> None:
        """Wait, at most `within` s, until no pass of `shard` is in flight."""
        idle = self._idle.get(shard)
        if idle is not None and self._active.get(shard, 0):
            with suppress(TimeoutError):
                await asyncio.wait_for(idle.wait(), within)


def shard_lease(name: str, shard: int) -> str:
    return f"{name}-shard-{shard}"


@dataclass
class Elector:
    leases: LeaseClient
    ownership: Ownership
    identity: str
    name: str  # Leases are <name>-shard-<i>, and <name>-members when shards > 1
    timing: Timing
    wall: Clock = time.time
    rng: random.Random = field(default_factory=random.Random)
    _seen: dict[int, Sighting] = field(default_factory=dict)
    _current: dict[int, Lease | None] = field(default_factory=dict)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _over_since: float | None = None  # when this replica went beyond its fair share

    async def run(self) -> None:
        """Elect until stop(); then release what is held. Never raises (but cancellation)."""
        metrics.SHARDS.set(self.ownership.shards)
        metrics.SHARDS_HELD.set(0)
        clock = self.ownership.clock
        while not self._stopping.is_set():
            started = clock()
            await self.attempt()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.next_step_in(started))

    def next_step_in(self, started: float) -> float:
        """Seconds until the next step, paced from this one's start: a slow API server must
        not add its latency to the period. Jittered so replicas do not step in lockstep."""
        period = self.timing.retry_period * self.rng.uniform(0.8, 1.0)
        return max(0.0, started + period - self.ownership.clock())

    async def attempt(self) -> None:
        """One step; an API error only costs the renewals it missed (serving then lapses
        on its own deadline)."""
        try:
            await self.step()
        except Exception as exc:
            metrics.LEASE_RENEW_FAILURES.inc()
            log.warning("lease election step failed: %s", exc)

    async def stop(self) -> None:
        """Stop serving, let passes in flight end, and free every Lease held (a SIGTERM)."""
        self._stopping.set()
        held = sorted(self.ownership.held())
        for shard in held:
            self.ownership.revoke(shard)
        await asyncio.gather(*(self._release(s) for s in held))
        if self.ownership.shards > 1:
            try:
                await self._heartbeat()  # leave: the others' fair share grows at once
            except WriteError as exc:
                log.warning("could not leave the membership Lease: %s", exc.message)

    async def step(self) -> None:
        clock = self.ownership.clock
        shards = range(self.ownership.shards)
        # All reads at once: a step's latency is one round trip, not one per shard.
        reads = asyncio.gather(*(self.leases.read(shard_lease(self.name, s)) for s in shards))
        if self.ownership.shards > 1:
            live, leases = await asyncio.gather(self._heartbeat(), reads)
        else:
            live, leases = 1, await reads
        seen_at = clock()
        for shard, lease in zip(shards, leases, strict=True):
            self._current[shard] = lease
            # An absent Lease is a free one, first seen now: it may become orphaned too.
            record = lease.record if lease else LeaseRecord(shard_lease(self.name, shard), "", "")
            self._seen[shard] = observe(self._seen.get(shard), record, seen_at)
        now = clock()
        mine = {s for s in shards if self.ownership.serving(s) and self._holder(s) == self.identity}
        for shard in set(self.ownership.renewed) - mine:  # lost it, or it lapsed
            self.ownership.revoke(shard)
        # A Lease that still names us though we stopped serving it (renewals failed past the
        # deadline) is ours to take back: nobody else served it, and the write's
        # resourceVersion loses to any replica that took it over meanwhile.
        lapsed = {s for s in shards if self._holder(s) == self.identity} - mine
        free = {s for s in shards if self._holder(s) == ""} | lapsed  # absent or released
        abandoned = {s for s in shards if orphaned(self._seen[s], self.identity, now, self.timing)}
        over = len(mine) > fair_share(self.ownership.shards, live)
        if not over:
            self._over_since = None
        elif self._over_since is None:
            self._over_since = now
        may_release = (
            self._over_since is not None and now - self._over_since >= self.timing.duration
        )
        claims = plan_claims(
            self.identity, self.ownership.shards, mine, free - mine, abandoned, live, may_release
        )
        for shard in claims.release:
            self.ownership.revoke(shard)
        renew = {
            s
            for s in mine - set(claims.release)
            if now - self.ownership.renewed[s] >= self.timing.renew_deadline / 2
        }
        await asyncio.gather(
            *(self._release(s) for s in claims.release),
            *(self._claim(s) for s in sorted(renew | set(claims.take))),
        )

    def _holder(self, shard: int) -> str:
        lease = self._current.get(shard)
        return lease.record.holder if lease is not None else ""

    async def _claim(self, shard: int) -> None:
        started = self.ownership.clock()  # conservative: the renewal counts from the send
        name = shard_lease(self.name, shard)
        try:
            written = await self.leases.write(
                name, self.identity, self.timing.duration, self._current.get(shard)
            )
        except WriteError as exc:
            metrics.LEASE_RENEW_FAILURES.inc()
            log.warning("could not write Lease %s: %s", name, exc.message)
            return
        if written is None:  # another replica wrote first
            return
        if not self.ownership.serving(shard):
            log.info("serving shard %d (Lease %s)", shard, name)
        self._current[shard] = written
        self._seen[shard] = observe(None, written.record, started)
        self.ownership.grant(shard, started)

    async def _release(self, shard: int) -> None:
        await self.ownership.drained(shard, RELEASE_GRACE)
        name = shard_lease(self.name, shard)
        current = self._current.get(shard)
        if current is None or current.record.holder != self.identity:
            return
        try:
            written = await self.leases.write(name, "", self.timing.duration, current)
        except WriteError as exc:
            log.warning("could not release Lease %s: %s", name, exc.message)
            return
        self._current[shard] = written
        log.info("released shard %d (Lease %s)", shard, name)

    async def _heartbeat(self) -> int:
        """Beat into the membership Lease when our beat is due (or we leave); return the
        number of live replicas, us included."""
        name = f"{self.name}-members"
        leaving = self._stopping.is_set()
        live: set[str] = set()
        for _ in range(3):  # a lost race re-reads: every replica beats into this one object
            current = await self.leases.read(name)
            now = self.wall()
            beats = dict(current.members) if current is not None else {}
            live = live_members(beats, now, self.timing)
            last = beats.get(self.identity)
            due = last is None or now - last >= self.timing.renew_deadline / 2
            if not leaving and not due and live == set(beats):
                return len(live)
            beats = {m: t for m, t in beats.items() if m in live and m != self.identity}
            if not leaving:
                beats[self.identity] = now
            holder = current.record.holder if current is not None else ""
            written = await self.leases.write(
                name, holder, self.timing.duration, current, members=beats
            )
            if written is not None:
                return max(len(beats), 1)
        return len(live | {self.identity})
