"""The soak's chaos, drawn up front from one seed: which services fail how and for how long,
which gain or lose an instance, when the operator is stopped and how.

Pure: the same settings give the same plan, so a soak that found something can be replayed.
Times are seconds since the chaos began.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from bench.env import fleet_eas, fleet_instances

# The emulator's fault modes the soak uses: each makes the poll fail (last-known-good).
FAULT_MODES = ("status", "delay", "garbage", "empty", "close")
SIGNALS = ("SIGTERM", "SIGKILL")


@dataclass(frozen=True)
class PlanSettings:
    services: int
    instances: int
    seconds: float  # how long the chaos lasts
    faults_per_minute: int
    changes_per_minute: int
    restarts: int
    seed: int = 1
    fault_seconds: tuple[float, float] = (10.0, 60.0)
    delay_seconds: float = 7.0  # the delay fault: past the fleet's 5 s read timeout
    min_instances: int = 8
    max_instances: int = 12
    restart_gap: float = 180.0  # at least this far apart, so each restart is recovered from
    restart_window: tuple[float, float] = (0.1, 0.75)  # fractions of `seconds`
    sabotage: bool = False  # the self-test: delete a slice behind the operator's back


@dataclass(frozen=True)
class FaultSpan:
    at: float
    until: float
    service: int
    mode: str

    def admin_body(self, delay_seconds: float) -> dict[str, Any]:
        """The fault as POSTed to the emulator's /admin/faults (until deleted)."""
        body: dict[str, Any] = {"mode": self.mode, "service": fleet_eas(self.service)}
        if self.mode == "status":
            body["status"] = 500
        elif self.mode == "delay":
            body["seconds"] = delay_seconds
        return body


@dataclass(frozen=True)
class Change:
    at: float
    service: int
    add: str | None  # the IP of a new instance
    remove: str | None  # the IP of an instance that leaves


@dataclass(frozen=True)
class Restart:
    at: float
    signal: str  # SIGTERM (graceful) or SIGKILL


@dataclass(frozen=True)
class Sabotage:
    at: float
    service: int


@dataclass(frozen=True)
class Plan:
    faults: tuple[FaultSpan, ...]
    changes: tuple[Change, ...]
    restarts: tuple[Restart, ...]
    sabotage: Sabotage | None


def make_plan(s: PlanSettings) -> Plan:
    rng = random.Random(s.seed)
    faults = _faults(s, rng)
    changes = _changes(s, rng)
    restarts = _restarts(s, rng)
    sabotage = Sabotage(s.seconds * 0.5, rng.randrange(s.services)) if s.sabotage else None
    return Plan(faults, changes, restarts, sabotage)


def _minutes(s: PlanSettings) -> range:
    return range(math.ceil(s.seconds / 60.0))


def _starts(rng: random.Random, minute: int, count: int, limit: float) -> list[float]:
    starts = sorted(minute * 60.0 + rng.uniform(0.0, 60.0) for _ in range(count))
    return [at for at in starts if at < limit]


def _faults(s: PlanSettings, rng: random.Random) -> tuple[FaultSpan, ...]:
    # One fault at a time per service: the emulator applies the oldest matching one, so an
    # overlap would only hide the second.
    busy_until = [0.0] * s.services
    spans: list[FaultSpan] = []
    for minute in _minutes(s):
        for at in _starts(rng, minute, s.faults_per_minute, s.seconds):
            free = [i for i in range(s.services) if busy_until[i] <= at]
            if not free:
                continue
            service = rng.choice(free)
            until = min(at + rng.uniform(*s.fault_seconds), s.seconds)
            busy_until[service] = until
            spans.append(FaultSpan(at, until, service, rng.choice(FAULT_MODES)))
    return tuple(spans)


def _changes(s: PlanSettings, rng: random.Random) -> tuple[Change, ...]:
    current: dict[int, list[str]] = {}
    next_host: dict[int, int] = {}
    changes: list[Change] = []
    for minute in _minutes(s):
        for at in _starts(rng, minute, s.changes_per_minute, s.seconds):
            service = rng.randrange(s.services)
            ips = current.setdefault(
                service, [str(i["ip"]) for i in fleet_instances(service, s.instances)]
            )
            grow = len(ips) < s.max_instances and (
                len(ips) <= s.min_instances or rng.random() < 0.5
            )
            if grow:
                host = next_host.get(service, s.instances + 1)
                next_host[service] = host + 1
                ip = f"10.{(service >> 8) & 255}.{service & 255}.{host}"
                ips.append(ip)
                changes.append(Change(at, service, add=ip, remove=None))
            else:
                ip = rng.choice(ips)
                ips.remove(ip)
                changes.append(Change(at, service, add=None, remove=ip))
    return tuple(changes)


def _restarts(s: PlanSettings, rng: random.Random) -> tuple[Restart, ...]:
    if s.restarts <= 0:
        return ()
    low, high = (fraction * s.seconds for fraction in s.restart_window)
    gap = min(s.restart_gap, (high - low) / s.restarts)
    slack = (high - low) - gap * (s.restarts - 1)
    # Sorted uniform offsets plus fixed gaps: random times that keep the minimum spacing.
    offsets = sorted(rng.uniform(0.0, slack) for _ in range(s.restarts))
    # Both kinds as evenly as the count allows; an odd one out is drawn too.
    signals = [SIGNALS[index % 2] for index in range(s.restarts)]
    if s.restarts % 2:
        signals[-1] = rng.choice(SIGNALS)
    rng.shuffle(signals)
    return tuple(
        Restart(low + offset + index * gap, signal)
        for index, (offset, signal) in enumerate(zip(offsets, signals, strict=True))
    )
