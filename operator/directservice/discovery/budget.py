"""Shared call budgets for discovery APIs, fair interval stretching, and failure backoff.

Vendors limit discovery calls per credential, not per caller: ModelArts allows an IAM
sub-user 20 calls a minute, however many DirectServices use it. So the operator keeps one
token bucket per budget key (a credential identity, or the discovery host for APIs without
credentials), and every DirectService on that key draws from it.

- acquire() waits for a token, so the budget is never exceeded. The bucket holds at most one
  token and refills at callsPerMinute/60 per second, so any 60-second window sees at most
  callsPerMinute calls: one token may be stored at the window's start and callsPerMinute - 1
  more accrue inside it (the initial burst is that single stored token).
- Waiters are served first come, first served (asyncio.Lock is FIFO), so no service starves.
- Stretching: with N services on a budget of C calls/min, each polls at most every N*60/C
  seconds (effective_interval), so they ask for what the bucket can give instead of queueing.
- A 429 pauses the whole key until Retry-After: the vendor throttles the credential, not the
  caller that happened to hit it.

The reconciler loop runs one poll at a time per DirectService, so each service has at most one
call in flight (or waiting here) at any moment. Pure asyncio; clock and sleep are injectable so
tests run minutes of budget in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

DEFAULT_THROTTLE_PAUSE = 10.0  # a 429 without Retry-After
MAX_THROTTLE_PAUSE = 600.0  # a hostile or broken Retry-After must not stop polling for days
DEFAULT_MAX_WAIT = 60.0
MIN_STALE_AFTER = 120.0
PRUNE_EVERY = 1.0  # s between two looks for stale seats of one budget
BACKOFF_CAP_FACTOR = 8  # failures back off up to 8 poll intervals ...
MAX_BACKOFF = 300.0  # ... and at most 5 minutes, unless the interval itself is longer


@dataclass(frozen=True)
class BudgetKey:
    """Who shares a budget. `name` must identify the credential without revealing it (providers
    use a hash); `calls_per_minute` None means unlimited (only 429 pauses apply)."""

    name: str
    calls_per_minute: float | None = None


@dataclass
class _Seat:
    calls_per_minute: float | None
    last_seen: float
    interval: float = 0.0


_UNKNOWN = -1.0  # the rate cache is stale


@dataclass
class _Bucket:
    tokens: float
    updated: float
    paused_until: float = -math.inf
    seats: dict[str, _Seat] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Every poll asks for the rate and the member count: with a thousand seats on one key,
    # computing them from the seats each time made polls quadratic. Seats change rarely.
    pruned_at: float = -math.inf
    _rate: float | None = _UNKNOWN

    def rate(self) -> float | None:
        """Calls per minute: the strictest any current member asked for."""
        if self._rate == _UNKNOWN:
            limits = [s.calls_per_minute for s in self.seats.values() if s.calls_per_minute]
            self._rate = min(limits) if limits else None
        return self._rate

    def sit(self, member_id: str, calls_per_minute: float | None, now: float) -> None:
        seat = self.seats.get(member_id)
        if seat is None:
            self.seats[member_id] = _Seat(calls_per_minute, last_seen=now)
            self._stricter(calls_per_minute)
        else:
            if seat.calls_per_minute != calls_per_minute:
                looser = not calls_per_minute or (
                    seat.calls_per_minute is not None and calls_per_minute > seat.calls_per_minute
                )
                if looser:  # the strictest may have been this seat's old limit
                    self._rate = _UNKNOWN
                else:
                    self._stricter(calls_per_minute)
            seat.calls_per_minute, seat.last_seen = calls_per_minute, now

    def _stricter(self, calls_per_minute: float | None) -> None:
        """A member asks for this limit (None or 0: none) on top of the others. A known rate
        is updated in place: a start-up where thousands of members sit down one by one must
        not scan all seats for each of them."""
        if not calls_per_minute or self._rate == _UNKNOWN:
            return
        self._rate = calls_per_minute if self._rate is None else min(self._rate, calls_per_minute)

    def stand(self, member_ids: Iterable[str]) -> None:
        for member_id in member_ids:
            if self.seats.pop(member_id, None) is not None:
                self._rate = _UNKNOWN

    def refill(self, now: float) -> None:
        rate = self.rate()
        if rate is not None and now > self.updated:
            self.tokens = min(1.0, self.tokens + (now - self.updated) * rate / 60.0)
        self.updated = max(self.updated, now)

    def wait(self, now: float) -> float:
        rate = self.rate()
        needed = 0.0 if rate is None or self.tokens >= 1.0 else (1.0 - self.tokens) * 60.0 / rate
        return max(self.paused_until - now, needed)


class RateBudgets:
    """All budgets of one operator process; share one instance between all DirectServices."""

    def __init__(
        self,
        *,
        defaults: Mapping[str, float | None] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        # Per provider kind, from --rate-budget; a provider's own default applies otherwise.
        self.defaults = dict(defaults or {})
        self.clock = clock
        self.sleep = sleep
        self._buckets: dict[str, _Bucket] = {}

    def default_for(self, kind: str) -> float | None:
        return self.defaults.get(kind)

    def member(self, member_id: str) -> Member:
        """A handle for one DirectService (member_id: e.g. its namespace/name)."""
        return Member(self, member_id)

    def _bucket(self, name: str) -> _Bucket:
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(tokens=1.0, updated=self.clock())
        return bucket

    def _active(self, bucket: _Bucket, now: float) -> int:
        """Members that polled recently: one that stopped without leave() drops out after a
        few of its own intervals (at least MIN_STALE_AFTER), so the others are not stretched
        forever. Checked once a second at most: a second more changes nothing."""
        if now - bucket.pruned_at >= PRUNE_EVERY:
            bucket.pruned_at = now
            bucket.stand(
                [
                    member_id
                    for member_id, seat in bucket.seats.items()
                    if now - seat.last_seen > max(MIN_STALE_AFTER, 3 * seat.interval)
                ]
            )
        return len(bucket.seats)


class Member:
    """One DirectService's view of its budget. Its key may change (a rotated credential)."""

    def __init__(self, budgets: RateBudgets, member_id: str) -> None:
        self._budgets = budgets
        self.member_id = member_id
        self.key: BudgetKey | None = None

    def _join(self, key: BudgetKey) -> _Bucket:
        if self.key is not None and self.key.name != key.name:
            self.leave()
        self.key = key
        bucket = self._budgets._bucket(key.name)
        bucket.sit(self.member_id, key.calls_per_minute, self._budgets.clock())
        return bucket

    async def acquire(self, key: BudgetKey, *, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        """Wait for one call's token. Raises RateLimited instead of waiting out a pause longer
        than `max_wait`, so the poll loop can report it and sleep rather than hang here."""
        budgets = self._budgets
        bucket = self._join(key)
        paused_for = bucket.paused_until - budgets.clock()
        if paused_for > max_wait:
            raise DiscoveryError(
                Reason.RATE_LIMITED,
                f"the discovery API throttled budget {key.name}; calls resume in "
                f"{math.ceil(paused_for)}s",
                retry_after=paused_for,
            )
        async with bucket.lock:
            while True:
                now = budgets.clock()
                bucket.refill(now)
                delay = bucket.wait(now)
                if delay <= 0:
                    if bucket.rate() is not None:
                        bucket.tokens -= 1.0
                    seat = bucket.seats.get(self.member_id)
                    if seat is not None:
                        seat.last_seen = now
                    return
                await budgets.sleep(delay)

    def throttled(self, retry_after: float | None) -> None:
        """The API answered 429: pause every caller of this key."""
        if self.key is None:
            return
        pause = DEFAULT_THROTTLE_PAUSE if retry_after is None else retry_after
        pause = min(max(pause, 0.0), MAX_THROTTLE_PAUSE)
        bucket = self._budgets._bucket(self.key.name)
        bucket.paused_until = max(bucket.paused_until, self._budgets.clock() + pause)

    def effective_interval(self, poll_interval: float) -> float:
        """max(pollInterval, N x 60 / callsPerMinute) for the N services sharing the budget."""
        if self.key is None:
            return poll_interval
        bucket = self._budgets._bucket(self.key.name)
        members = self._budgets._active(bucket, self._budgets.clock())
        rate = bucket.rate()
        interval = poll_interval if rate is None else max(poll_interval, members * 60.0 / rate)
        seat = bucket.seats.get(self.member_id)
        if seat is not None:
            seat.interval = interval
        return interval

    def sharing(self) -> tuple[int, float | None]:
        """(members, calls per minute) of the current budget, for status messages."""
        if self.key is None:
            return 0, None
        bucket = self._budgets._bucket(self.key.name)
        return self._budgets._active(bucket, self._budgets.clock()), bucket.rate()

    def leave(self) -> None:
        """Give the seat back (DirectService deleted, or its credential changed)."""
        if self.key is not None:
            bucket = self._budgets._buckets.get(self.key.name)
            if bucket is not None:
                bucket.stand([self.member_id])
        self.key = None


def backoff_delay(
    interval: float, failures: int, rng: random.Random, retry_after: float | None = None
) -> float:
    """The delay after `failures` consecutive failed polls: exponential with jitter, capped at
    BACKOFF_CAP_FACTOR intervals (and MAX_BACKOFF unless the interval is longer), never shorter
    than the server's Retry-After; zero failures is the plain interval. Jitter keeps services
    that failed together (one outage) from retrying in lockstep."""
    if failures <= 0:
        base = interval
    else:
        ceiling = min(interval * BACKOFF_CAP_FACTOR, max(MAX_BACKOFF, interval))
        base = min(interval * 2.0 ** (failures - 1), ceiling) * rng.uniform(0.8, 1.0)
    if retry_after is not None:
        base = max(base, min(retry_after, MAX_THROTTLE_PAUSE))
    return base
