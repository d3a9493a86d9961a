"""The operator's own account of failed polls, read from its logs after the soak.

A settled service that does not publish its answer is a loss either way; but whether the
operator's polls of it were failing meanwhile (read timeouts on a starved machine, with no
fault injected) tells an overloaded operator from a wrong one. Pure but for `read_logs`.
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from soak.book import BookView

# 2026-12-01 11:52:19,685 INFO directservice.controller.reconciler: [bench/fleet-00536]
# discovery failed: Timeout: no answer from ... in time
_FAILED = re.compile(
    r"^(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ "
    r"\[(?P<namespace>[^/\]]+)/(?P<name>[^\]]+)\] discovery failed: (?P<reason>[A-Za-z]+)"
)

Failures = Mapping[str, Sequence[tuple[float, str]]]  # service -> sorted (time, reason)


def parse_failures(lines: Iterable[str], namespace: str) -> dict[str, list[tuple[float, str]]]:
    """Failed polls per DirectService of `namespace`, as (unix time, reason), sorted. The log
    writes local time, as this process reads it."""
    out: dict[str, list[tuple[float, str]]] = {}
    for line in lines:
        match = _FAILED.match(line)
        if match is None or match.group("namespace") != namespace:
            continue
        when = datetime.datetime.strptime(match.group("when"), "%Y-%m-%d %H:%M:%S,%f")
        out.setdefault(match.group("name"), []).append((when.timestamp(), match.group("reason")))
    for failures in out.values():
        failures.sort()
    return out


def failures_between(failures: Failures, service: str, start: float, end: float) -> dict[str, int]:
    """Failed polls of `service` in [start, end], by reason."""
    found = failures.get(service, ())
    low = bisect.bisect_left(found, (start, ""))
    high = bisect.bisect_right(found, (end, "\uffff"))
    return dict(sorted(Counter(reason for _, reason in found[low:high]).items()))


def read_logs(paths: Iterable[Path], namespace: str) -> dict[str, list[tuple[float, str]]]:
    merged: dict[str, list[tuple[float, str]]] = {}
    for path in paths:
        with path.open(errors="replace") as lines:
            for service, found in parse_failures(lines, namespace).items():
                merged.setdefault(service, []).extend(found)
    for found in merged.values():
        found.sort()
    return merged


def unprovoked(failures: Failures, book: BookView) -> list[float]:
    """Times of failed polls of a service with no fault injected at the time: the emulator
    answered, the operator did not take the answer in."""
    times: list[float] = []
    for service, found in failures.items():
        windows = book.faults.get(service, ())
        times.extend(at for at, _ in found if not any(w.overlaps(at - 1.0, at) for w in windows))
    return sorted(times)


def failure_summary(failures: Failures, book: BookView, start: float) -> dict[str, dict[str, int]]:
    """Failed polls from `start` on, by reason: all of them, and the unprovoked ones."""
    every: Counter[str] = Counter()
    alone: Counter[str] = Counter()
    for service, found in failures.items():
        windows = book.faults.get(service, ())
        for at, reason in found:
            if at < start:
                continue
            every[reason] += 1
            if not any(w.overlaps(at - 1.0, at) for w in windows):
                alone[reason] += 1
    return {"by_reason": dict(sorted(every.items())), "without_fault": dict(sorted(alone.items()))}
