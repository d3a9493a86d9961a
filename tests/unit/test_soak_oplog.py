"""The operator's failed polls, read back from its log lines for the soak's report."""

from __future__ import annotations

import datetime

import pytest

from soak.book import BookView, FaultWindow
from soak.oplog import failure_summary, failures_between, parse_failures, unprovoked

pytestmark = pytest.mark.unit


def at(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


LINES = [
    "2026-12-01 11:52:19,685 INFO directservice.controller.reconciler: [bench/fleet-00536] "
    "discovery failed: Timeout: no answer from http://127.0.0.1:1/x in time",
    "2026-12-01 11:52:18,000 INFO directservice.controller.reconciler: [bench/fleet-00536] "
    "discovery failed: EmptyList: discovery returned no instances",
    "2026-12-01 11:52:20,100 INFO directservice.controller.reconciler: [bench/fleet-00001] "
    "published 10 endpoints (10 ready) in 1 writes",
    "2026-12-01 11:52:21,000 INFO directservice.controller.reconciler: [other/fleet-00536] "
    "discovery failed: ServerError: http://127.0.0.1:1/x answered 500",
    "Traceback (most recent call last):",
    "2026-12-01 11:52:22,000 INFO kopf.objects: [bench/fleet-00536] Daemon 'poll' succeeded.",
]


def test_failed_polls_are_parsed_per_service_in_time_order() -> None:
    found = parse_failures(LINES, "bench")
    assert found == {
        "fleet-00536": [
            (at("2026-12-01 11:52:18,000"), "EmptyList"),
            (at("2026-12-01 11:52:19,685"), "Timeout"),
        ]
    }


def test_failures_between_counts_by_reason_in_an_inclusive_window() -> None:
    found = parse_failures(LINES, "bench")
    start = at("2026-12-01 11:52:18,000")
    assert failures_between(found, "fleet-00536", start, start + 1.685) == {
        "EmptyList": 1,
        "Timeout": 1,
    }
    assert failures_between(found, "fleet-00536", start + 0.001, start + 10) == {"Timeout": 1}
    assert failures_between(found, "fleet-00002", 0.0, 1e12) == {}


def test_failures_without_an_injected_fault_are_told_apart() -> None:
    found = parse_failures(LINES, "bench")
    empty_at = at("2026-12-01 11:52:18,000")
    # The empty answer was injected; the timeout a second later came after the clear.
    book = BookView({}, {"fleet-00536": (FaultWindow(empty_at - 5.0, empty_at + 0.5),)}, ())
    assert failure_summary(found, book, start=0.0) == {
        "by_reason": {"EmptyList": 1, "Timeout": 1},
        "without_fault": {"Timeout": 1},
    }
    assert failure_summary(found, book, start=empty_at + 1.0)["by_reason"] == {"Timeout": 1}


def test_unprovoked_failures_are_listed_by_time() -> None:
    found = parse_failures(LINES, "bench")
    empty_at = at("2026-12-01 11:52:18,000")
    book = BookView({}, {"fleet-00536": (FaultWindow(empty_at - 5.0, empty_at + 0.5),)}, ())
    assert unprovoked(found, book) == [at("2026-12-01 11:52:19,685")]
    assert len(unprovoked(found, BookView({}, {}, ()))) == 2
