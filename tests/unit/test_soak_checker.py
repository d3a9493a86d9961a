"""The soak's endpoint-loss checker on synthetic timelines: what a correct operator publishes
passes, and every kind of loss (or stale state) is reported, so a zero means something."""

from __future__ import annotations

import pytest

from soak.book import BookView, FaultWindow, Outage, Published, Version
from soak.checker import Settle, check_all, check_service, settle_times, unexplained

pytestmark = pytest.mark.unit

SETTLE = Settle(answer=30.0, fault=50.0, restart=20.0)
SERVICE = "fleet-00001"


def eps(*hosts: int) -> frozenset[str]:
    return frozenset(f"10.0.1.{h}:8000" for h in hosts)


TEN = eps(*range(1, 11))
NINE = eps(*range(1, 10))  # .10 removed
ELEVEN = eps(*range(1, 12))  # .11 added

# The answer: ten instances from the start, .10 leaves at t=100, .10 and .11 come at t=200.
VERSIONS = (
    Version(0.0, 0.0, TEN),
    Version(100.0, 100.1, NINE),
    Version(200.0, 200.1, ELEVEN),
)
GOOD = (
    Published(10.0, TEN),  # first publication
    Published(104.0, NINE),  # the next poll after the change (.10 drains: not ready)
    Published(203.0, ELEVEN),
)


def book(
    versions: tuple[Version, ...] = VERSIONS,
    faults: tuple[FaultWindow, ...] = (),
    outages: tuple[Outage, ...] = (),
) -> BookView:
    return BookView({SERVICE: versions}, {SERVICE: faults}, outages)


def grid(start: float, end: float, step: float = 5.0) -> list[float]:
    return [start + k * step for k in range(int((end - start) / step) + 1)]


def test_a_correct_timeline_has_no_violation_and_is_really_checked() -> None:
    result = check_service(SERVICE, book(), GOOD, grid(20.0, 400.0), SETTLE)
    assert result.violations == ()
    assert result.states == 2  # the two states after the first publication
    assert result.versions_reached == 3
    # Settled: before the first change, and from 30 s after each change on.
    assert result.checks == len(grid(30.0, 95.0)) + len(grid(135.0, 195.0)) + len(
        grid(235.0, 400.0)
    )


def test_a_deleted_slice_is_a_loss_even_if_repaired_before_any_check() -> None:
    timeline = (*GOOD, Published(300.0, frozenset()), Published(300.5, ELEVEN))
    result = check_service(SERVICE, book(), timeline, [], SETTLE)
    assert [(v.kind, v.at, v.published, v.expected) for v in result.violations] == [
        ("unexplained", 300.0, 0, 11)
    ]
    assert result.violations[0].missing == tuple(sorted(ELEVEN))


def test_one_endpoint_missing_from_what_no_answer_lacked_is_a_loss() -> None:
    # Ten-minus-.3 was never an answer: the operator must not publish it.
    timeline = (GOOD[0], Published(50.0, TEN - eps(3)), Published(51.0, TEN))
    violations, _, _ = unexplained(SERVICE, VERSIONS, timeline)
    assert [(v.at, v.missing, v.extra) for v in violations] == [(50.0, ("10.0.1.3:8000",), ())]


def test_going_back_to_an_older_answer_is_a_loss() -> None:
    timeline = (*GOOD[:2], Published(150.0, TEN))  # NINE was published, then TEN again
    violations, _, _ = unexplained(SERVICE, VERSIONS, timeline)
    assert [(v.at, v.kind) for v in violations] == [(150.0, "unexplained")]


def test_the_same_set_as_a_newer_answer_is_no_regression() -> None:
    # Gain then lose the same instance: the third answer equals the first one.
    versions = (Version(0.0, 0.0, TEN), Version(100.0, 100.1, ELEVEN), Version(200.0, 200.1, TEN))
    timeline = (Published(5.0, TEN), Published(105.0, ELEVEN), Published(205.0, TEN))
    assert unexplained(SERVICE, versions, timeline)[0] == []


def test_publishing_an_answer_before_it_was_served_is_caught() -> None:
    timeline = (GOOD[0], Published(99.0, NINE))  # the change is called at 100
    violations, _, _ = unexplained(SERVICE, VERSIONS, timeline)
    assert [v.at for v in violations] == [99.0]


def test_partial_states_before_the_first_publication_are_not_losses() -> None:
    timeline = (Published(5.0, frozenset()), Published(6.0, eps(1, 2)), *GOOD)
    assert unexplained(SERVICE, VERSIONS, timeline)[0] == []


def test_a_state_that_never_catches_up_fails_the_settled_checks() -> None:
    timeline = GOOD[:2]  # ELEVEN is never published
    result = check_service(SERVICE, book(), timeline, grid(20.0, 300.0), SETTLE)
    stale = [v for v in result.violations if v.kind == "unsettled"]
    assert stale
    assert min(v.at for v in stale) == pytest.approx(235.0)  # once 30 s settled
    assert stale[0].missing == ("10.0.1.10:8000", "10.0.1.11:8000")


def test_an_extra_endpoint_is_caught_too() -> None:
    timeline = (Published(10.0, TEN),)  # the change to NINE is never published
    result = check_service(SERVICE, book(VERSIONS[:2]), timeline, [150.0], SETTLE)
    assert [(v.kind, v.extra) for v in result.violations] == [("unsettled", ("10.0.1.10:8000",))]


def test_a_service_never_published_is_a_loss_once_settled() -> None:
    result = check_service(SERVICE, book(VERSIONS[:1]), (), [40.0], SETTLE)
    assert [(v.kind, v.published, v.expected) for v in result.violations] == [("unsettled", 0, 10)]


def test_faults_and_restarts_suspend_the_settled_check_but_not_the_other() -> None:
    faults = (FaultWindow(40.0, 60.0, linger=7.0),)
    outages = (Outage(250.0, 270.0),)
    stale = (Published(10.0, TEN),)  # wrong from t=130 on
    times = [50.0, 110.0, 140.0, 260.0, 289.0, 291.0]
    result = check_service(SERVICE, book(VERSIONS[:2], faults, outages), stale, times, SETTLE)
    # 50: fault; 110: 10 s after the change; 140: fault cleared + linger + 50 s ago, change
    # 40 s ago -> checked; 260 and 289: restart (resynced 270, + 20 s); 291: checked.
    assert [v.at for v in result.violations] == [140.0, 291.0]
    assert result.checks == 2

    deleted = (Published(10.0, TEN), Published(45.0, frozenset()), Published(46.0, TEN))
    violations, _, _ = unexplained(SERVICE, VERSIONS[:1], deleted)
    assert [v.at for v in violations] == [45.0]  # even during a fault


def test_an_uncleared_fault_never_settles() -> None:
    faults = (FaultWindow(40.0, None),)
    result = check_service(SERVICE, book(VERSIONS[:1], faults), (), [1e6], SETTLE)
    assert result.checks == 0


def test_check_all_counts_every_service_and_slot() -> None:
    other = "fleet-00002"
    view = BookView({SERVICE: VERSIONS, other: VERSIONS[:1]}, {}, ())
    timelines = {SERVICE: GOOD, other: (Published(1.0, TEN), Published(90.0, NINE))}
    report = check_all([SERVICE, other], view, timelines, [80.0, 95.0], SETTLE)
    assert report.services == 2
    assert report.check_slots == 4
    assert report.services_with_loss == (other,)
    # NINE at 90 was never an answer of `other`, and at 95 it is still wrong.
    assert [(v.kind, v.at) for v in report.violations] == [
        ("unexplained", 90.0),
        ("unsettled", 95.0),
    ]
    assert report.unsettled == 1
    assert report.versions == 4


# A fleet service early in a soak on a starved machine: it gains .11 at 10.7 s; the
# operator's poll times out (logged at 21.8 s, its retries back off silently) and its next
# successful poll, at 109.7 s, publishes the new answer. It kept its last-known-good ten.
GAINED = (Version(0.0, 0.0, TEN), Version(10.7, 10.8, ELEVEN))
KEPT_TEN = (Published(5.0, TEN), Published(109.7, ELEVEN))
TIMED_OUT = (21.8,)
SOAK_SETTLE = settle_times(5.0, 3, 10.0, 8, 7.0, 15.0)


def test_an_older_answer_kept_while_the_operators_polls_fail_is_late_not_lost() -> None:
    times = grid(5.0, 150.0)
    strict = check_service(SERVICE, book(GAINED), KEPT_TEN, times, SOAK_SETTLE)
    # Settled 45 s after the change: 60 ... 105 s see the ten, .11 missing.
    assert [v.at for v in strict.violations] == grid(60.0, 105.0)
    assert {v.missing for v in strict.violations} == {("10.0.1.11:8000",)}

    told = check_service(SERVICE, book(GAINED), KEPT_TEN, times, SOAK_SETTLE, TIMED_OUT)
    assert told.violations == ()
    assert [(v.kind, v.at) for v in told.late] == [("late", t) for t in grid(60.0, 105.0)]
    assert told.checks == strict.checks  # still settled checks, only judged differently


def test_a_failure_excuses_neither_a_stall_nor_a_state_it_did_not_keep() -> None:
    times = grid(5.0, 300.0)
    # The loop stalls after the failure: late for `failing` after it, then a loss.
    stalled = check_service(SERVICE, book(GAINED), KEPT_TEN[:1], times, SOAK_SETTLE, TIMED_OUT)
    assert max(v.at for v in stalled.late) <= 21.8 + SOAK_SETTLE.failing
    assert min(v.at for v in stalled.violations) == pytest.approx(140.0)
    assert len(stalled.late) + len(stalled.violations) == len(grid(60.0, 300.0))
    # A failure before the state was published: polls since have succeeded, or it would
    # not have been published.
    early = (Published(30.0, TEN), Published(109.7, ELEVEN))
    result = check_service(SERVICE, book(GAINED), early, times, SOAK_SETTLE, TIMED_OUT)
    assert result.late == () and len(result.violations) == len(grid(60.0, 105.0))
    # A state no answer ever had is lost, failing polls or not.
    partial = (Published(5.0, TEN), Published(20.0, TEN - eps(3)), Published(109.7, ELEVEN))
    result = check_service(SERVICE, book(GAINED), partial, times, SOAK_SETTLE, TIMED_OUT)
    assert result.late == ()
    assert [v.kind for v in result.violations] == ["unexplained"] + ["unsettled"] * 10


def test_check_all_takes_the_failures_from_the_operators_logs() -> None:
    view = BookView({SERVICE: GAINED}, {}, ())
    failures = {SERVICE: [(21.8, "Timeout")], "fleet-00002": [(1.0, "Timeout")]}
    times = grid(60.0, 105.0)
    report = check_all([SERVICE], view, {SERVICE: KEPT_TEN}, times, SOAK_SETTLE, failures)
    assert (report.lost, len(report.late), report.checks) == (0, 10, 10)
    strict = check_all([SERVICE], view, {SERVICE: KEPT_TEN}, times, SOAK_SETTLE)
    assert (strict.lost, strict.late) == (10, ())


def test_settle_times_follow_the_operators_rules() -> None:
    settle = settle_times(
        interval=5.0,
        confirmations=3,
        drain_seconds=10.0,
        backoff_cap_intervals=8,
        delay_seconds=7.0,
        slack=15.0,
    )
    assert settle.answer == pytest.approx(5.0 * 4 + 10.0 + 15.0)
    assert settle.fault == pytest.approx(5.0 * 9 + 7.0 + 15.0)  # the longest backoff
    assert settle.quiet == pytest.approx(settle.fault + 7.0)
    # Backing off 1, 2, 4 and 8 intervals, four polls that time out (7 s), the slack.
    assert settle.failing == pytest.approx(5.0 * 15 + 4 * 7.0 + 15.0)
