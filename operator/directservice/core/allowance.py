"""A write allowance (token bucket): `burst` writes at once, then one per `refill` seconds.

The status of one DirectService goes through one, so that however its discovery flaps or its
load swings, it costs the API server at most burst + 60 / refill status writes a minute. A
write that must wait is not lost: the caller writes the state of that moment once allowed.
Pure: the caller passes the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPSILON = 1e-6  # of a token
MIN_WAIT = 0.01  # s: never ask to be called back sooner (a clock of finite resolution)


@dataclass(frozen=True, slots=True)
class Allowance:
    burst: int
    refill: float  # seconds per write, once the burst is spent
    tokens: float
    at: float  # when `tokens` was counted

    @classmethod
    def full(cls, burst: int, refill: float) -> Allowance:
        return cls(burst, refill, float(burst), -math.inf)

    def spend(self, now: float) -> tuple[Allowance, float]:
        """(the allowance after one write now, 0.0), or (self, seconds until one may be
        written) when none is left."""
        tokens = min(float(self.burst), self.tokens + max(0.0, now - self.at) / self.refill)
        if tokens >= 1.0 - _EPSILON:  # a timer set for the wait below may run a hair early
            return Allowance(self.burst, self.refill, max(0.0, tokens - 1.0), now), 0.0
        return self, max((1.0 - tokens) * self.refill, MIN_WAIT)
