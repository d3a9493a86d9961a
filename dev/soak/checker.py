"""Endpoint loss, decided from what the emulator answered (the book) and what the slice watch
saw published. Two checks, so that neither a wrong state nor a missing update goes unseen:

- Every published state is explained: once a service is first published, each later set
  of ready endpoints equals the answer of a version the emulator had been told to serve by
  then, and never of an older version than the state before it. The operator's rules allow
  nothing else: a failed, empty or garbage answer changes nothing (last-known-good), a big
  shrink waits for confirmations but then publishes that answer, and an instance that left
  is published as terminating (not ready) while it drains. A slice deleted or emptied, a
  partial answer, a regression to an older answer: all unexplained.
- Settled services match: at each check time, a service whose answer has not changed, whose
  faults have been clear, and whose operator has been up and resynced for long enough
  (`Settle`) publishes exactly its answer's ready set.

Loss is any violation of either, with one exception: a settled service that still publishes
an older answer while the operator's own polls of it fail (its log says so, with no fault
injected: read timeouts on a starved machine) is *late*, not lost. The operator does what
its rules say, keeping the last-known-good answer and backing off, so the check cannot be
settled; such checks are counted apart (`late_while_failing`) so that they stay visible.
Pure: no I/O.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from soak.book import BookView, Endpoints, Published, Version
from soak.oplog import Failures


@dataclass(frozen=True)
class Settle:
    """How long after each kind of disturbance a service must publish its answer."""

    answer: float  # after the answer changed
    fault: float  # after a fault cleared (failures back off, so longer)
    restart: float  # after a restarted operator had polled every service
    linger: float = 0.0  # the longest a fault may outlast its clear (a delayed request)
    failing: float = 0.0  # how long a failure the operator logged may keep it from the answer

    @property
    def quiet(self) -> float:
        """How long after the last disturbance every service must have settled."""
        return max(self.answer, self.fault + self.linger)


def settle_times(
    interval: float,
    confirmations: int,
    drain_seconds: float,
    backoff_cap_intervals: float,
    delay_seconds: float,
    slack: float,
) -> Settle:
    answer = interval * (confirmations + 1) + drain_seconds + slack
    fault = max(answer, interval * (backoff_cap_intervals + 1) + delay_seconds + slack)
    # A run of failures, from its logged first one: the operator backs off 1, 2, 4 ...
    # intervals up to the cap and retries there once, each retry a poll that may time out
    # (delay_seconds is past the fleet's read timeout).
    retries = math.floor(math.log2(max(backoff_cap_intervals, 1))) + 1
    waits = sum(min(2.0**k, backoff_cap_intervals) for k in range(retries))
    failing = interval * waits + retries * delay_seconds + slack
    return Settle(
        answer, fault, restart=2 * interval + slack, linger=delay_seconds, failing=failing
    )


@dataclass(frozen=True)
class Violation:
    service: str
    at: float
    kind: str  # "unexplained" (a published state), "unsettled" or "late" (a check time)
    published: int  # ready endpoints published
    expected: int  # ready endpoints of the answer it was compared with
    missing: tuple[str, ...]
    extra: tuple[str, ...]


@dataclass(frozen=True)
class ServiceCheck:
    violations: tuple[Violation, ...]
    states: int  # published states judged (after the first publication)
    versions_reached: int  # versions the published states matched at some point
    checks: int  # check times at which the service was settled, so compared
    late: tuple[Violation, ...] = ()  # mismatched checks while the operator's polls failed


def _violation(service: str, at: float, kind: str, ready: Endpoints, want: Endpoints) -> Violation:
    return Violation(
        service=service,
        at=at,
        kind=kind,
        published=len(ready),
        expected=len(want),
        missing=tuple(sorted(want - ready)),
        extra=tuple(sorted(ready - want)),
    )


def unexplained(
    service: str, versions: Sequence[Version], timeline: Sequence[Published]
) -> tuple[list[Violation], int, int]:
    """(violations, states judged, distinct versions reached); versions sorted by `called`."""
    called = [v.called for v in versions]
    current: int | None = None  # the version published last; None until first published
    reached: set[int] = set()
    violations: list[Violation] = []
    judged = 0
    for state in timeline:
        # Versions the emulator may have served by then: called at or before the state.
        last = bisect.bisect_right(called, state.at) - 1
        start = 0 if current is None else current
        match = next(
            (k for k in range(start, last + 1) if versions[k].endpoints == state.ready), None
        )
        if current is not None:
            judged += 1
        if match is not None:
            current = match
            reached.add(match)
        elif current is not None:  # before the first publication, partial states are no loss
            want = versions[last].endpoints  # the newest it may show (last >= current)
            violations.append(_violation(service, state.at, "unexplained", state.ready, want))
    return violations, judged, len(reached)


def published_at(timeline: Sequence[Published], times: Sequence[float]) -> list[Endpoints | None]:
    """The state seen at each of the sorted `times` (None before anything was published)."""
    at = [p.at for p in timeline]
    out: list[Endpoints | None] = []
    for t in times:
        index = bisect.bisect_right(at, t) - 1
        out.append(timeline[index].ready if index >= 0 else None)
    return out


def settled_answer(service: str, at: float, book: BookView, settle: Settle) -> Endpoints | None:
    """The answer `service` must publish at `at`, or None if it may still be catching up."""
    versions = book.versions.get(service, ())
    last = bisect.bisect_right([v.called for v in versions], at) - 1
    if last < 0 or versions[last].applied > at - settle.answer:
        return None
    if any(w.overlaps(at - settle.fault, at) for w in book.faults.get(service, ())):
        return None
    if any(o.covers(at, settle.restart) for o in book.outages):
        return None
    return versions[last].endpoints


def kept_while_failing(
    at: float,
    versions: Sequence[Version],
    timeline: Sequence[Published],
    failed: Sequence[float],
    settle: Settle,
) -> bool:
    """Whether the state published at `at` is an older answer the operator kept because its
    polls were failing (`failed`: sorted times it logged a failed poll). It logs only the
    first failure of a run and publishes a changed answer at its next successful poll, so a
    failure logged after the state was set says that no poll since has brought the new
    answer in. The run is taken as going on for `settle.failing` after that line, no longer:
    a poll loop that stalled after a failure still shows up as a loss."""
    index = bisect.bisect_right([p.at for p in timeline], at) - 1
    last = bisect.bisect_right([v.called for v in versions], at) - 1
    latest = bisect.bisect_right(failed, at) - 1
    if index < 0 or last < 1 or latest < 0:
        return False
    state, failure = timeline[index], failed[latest]
    older = any(v.endpoints == state.ready for v in versions[:last])
    return older and state.at < failure and at - failure <= settle.failing


def check_service(
    service: str,
    book: BookView,
    timeline: Sequence[Published],
    times: Sequence[float],
    settle: Settle,
    failed: Sequence[float] = (),
) -> ServiceCheck:
    """`failed`: sorted times the operator logged a failed poll of `service` (none: strict)."""
    versions = book.versions.get(service, ())
    violations, judged, reached = unexplained(service, versions, timeline)
    late: list[Violation] = []
    checks = 0
    for t, ready in zip(times, published_at(timeline, times), strict=True):
        want = settled_answer(service, t, book, settle)
        if want is None:
            continue
        checks += 1
        seen = frozenset() if ready is None else ready
        if seen == want:
            continue
        if kept_while_failing(t, versions, timeline, failed, settle):
            late.append(_violation(service, t, "late", seen, want))
        else:
            violations.append(_violation(service, t, "unsettled", seen, want))
    return ServiceCheck(tuple(violations), judged, reached, checks, tuple(late))


@dataclass(frozen=True)
class LossReport:
    services: int
    violations: tuple[Violation, ...]
    states_judged: int
    versions: int  # answer versions in the book, the initial ones included
    versions_reached: int
    checks: int  # (service, time) pairs compared
    check_slots: int  # (service, time) pairs in all, settled or not
    late: tuple[Violation, ...] = ()  # mismatches explained by the operator's failed polls

    @property
    def lost(self) -> int:
        return len(self.violations)

    @property
    def unsettled(self) -> int:
        """Violations at check times only (not the published states)."""
        return sum(1 for v in self.violations if v.kind == "unsettled")

    @property
    def services_with_loss(self) -> tuple[str, ...]:
        return tuple(sorted({v.service for v in self.violations}))


def check_all(
    services: Iterable[str],
    book: BookView,
    timelines: Mapping[str, Sequence[Published]],
    times: Sequence[float],
    settle: Settle,
    failures: Failures | None = None,
) -> LossReport:
    """`failures`: the operator's failed polls from its logs; None: every mismatch is a loss."""
    names = sorted(services)
    failed = {n: [at for at, _ in (failures or {}).get(n, ())] for n in names}
    results = [
        check_service(n, book, timelines.get(n, ()), times, settle, failed[n]) for n in names
    ]
    return LossReport(
        services=len(names),
        violations=tuple(v for r in results for v in r.violations),
        states_judged=sum(r.states for r in results),
        versions=sum(len(book.versions.get(n, ())) for n in names),
        versions_reached=sum(r.versions_reached for r in results),
        checks=sum(r.checks for r in results),
        check_slots=len(names) * len(times),
        late=tuple(v for r in results for v in r.late),
    )
