"""Leader election and shards on Leases: the pure decisions (no clock, no I/O).

Safety rests on two rules, as in client-go's elector:
- A holder serves only until `renew_deadline` after its last successful renewal, measured
  on its own clock, and renew_deadline < lease duration.
- Another replica takes a Lease over only after it has seen the same record (same
  resourceVersion) for a whole lease duration on *its* clock, or after the holder released it.
So no two replicas' clocks need to agree: by the time a taker thinks the Lease expired, the
holder has stopped writing for at least `duration - renew_deadline`.

Which shard serves a DirectService is a rendezvous hash of its rate-budget key: one budget
never spans two replicas, and changing the shard count moves only about 1/N of the keys.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    """Seconds. renew_deadline < duration is what keeps two holders apart."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.duration:
            raise ValueError(
                "lease timing needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.duration}"
            )


@dataclass(frozen=True)
class LeaseRecord:
    """A Lease as read from the API server. holder "" means free (released or never held)."""

    name: str
    holder: str
    version: str  # resourceVersion: any change of the record changes it
    transitions: int = 0


@dataclass(frozen=True)
class Sighting:
    """A record and when (on the observer's monotonic clock) it was first seen unchanged."""

    record: LeaseRecord
    since: float


def observe(previous: Sighting | None, record: LeaseRecord, now: float) -> Sighting:
    """The record as seen now: its clock restarts whenever the record changed."""
    if previous is not None and previous.record.version == record.version:
        return previous
    return Sighting(record, now)


def orphaned(seen: Sighting, me: str, now: float, timing: Timing) -> bool:
    """Has another replica's Lease (or a free one) gone unchanged for a whole duration?
    Then its holder stopped serving it at least `duration - renew_deadline` ago."""
    return seen.record.holder != me and now - seen.since >= timing.duration


def serving(last_renewed: float | None, now: float, timing: Timing) -> bool:
    """Does the holder still act on a Lease it renewed at `last_renewed` (own clock)?"""
    return last_renewed is not None and now - last_renewed < timing.renew_deadline


def shard_of(key: str, shards: int) -> int:
    """Rendezvous hash: the shard whose (shard, key) hash is highest. Going from N to N+1
    shards moves only the keys the new shard wins, about 1/(N+1) of them."""
    if shards <= 1:
        return 0
    return max(range(shards), key=lambda shard: _score(shard, key))


def _score(shard: int, key: str) -> int:
    digest = hashlib.blake2b(f"{shard}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def fair_share(shards: int, live_replicas: int) -> int:
    return math.ceil(shards / max(live_replicas, 1))


@dataclass(frozen=True)
class Claims:
    take: tuple[int, ...]  # shards to try to write ourselves into
    release: tuple[int, ...]  # shards held beyond the fair share: give back


def plan_claims(
    me: str,
    shards: int,
    held: Iterable[int],
    free: Iterable[int],
    orphaned: Iterable[int] = (),
    live_replicas: int = 1,
    may_release: bool = False,
) -> Claims:
    """Claim free shards up to a fair share, and orphaned ones (unchanged for a lease
    duration: their holder is gone) whatever the share, so no shard stays unserved.

    Beyond the share, release only when `may_release` (the elector has been over its share
    for a lease duration): a replica that died is still counted live for that long, and
    releasing to it would only bounce shards. Each replica prefers shards in its own hash
    order, so replicas starting together reach for different shards.
    """
    share = fair_share(shards, live_replicas)
    mine = _ordered(set(held), me)
    orphans = set(orphaned) - set(mine)
    if len(mine) > share:
        release = tuple(sorted(mine[share:])) if may_release else ()
        return Claims(take=tuple(sorted(orphans)), release=release)
    room = max(0, share - len(mine) - len(orphans))
    others = _ordered(set(free) - set(mine) - orphans, me)
    return Claims(take=tuple(sorted(orphans | set(others[:room]))), release=())


def _ordered(shard_set: set[int], me: str) -> list[int]:
    return sorted(shard_set, key=lambda s: _score(s, me), reverse=True)


def live_members(heartbeats: Mapping[str, float], now_wall: float, timing: Timing) -> set[str]:
    """Members whose heartbeat (wall clock, theirs) is younger than a lease duration. Clocks
    may disagree a little; a wrong count only delays rebalancing, never safety."""
    return {m for m, beat in heartbeats.items() if now_wall - beat < timing.duration}
