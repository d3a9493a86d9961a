"""The overload verdict: one for the process, judged over windows of every poll's lateness."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.core.overload import (
    LATE_SHARE,
    LATE_WINDOWS,
    NO_VERDICT,
    ON_TIME_WINDOWS,
    WINDOW,
    Load,
    late_after,
    record_poll,
)

pytestmark = pytest.mark.unit

INTERVAL = 5.0
LATE, ON_TIME, BETWEEN = 3.0, 0.1, 0.75  # s late, against a 1 s bound at a 5 s interval


def windows(kinds: list[list[float]], state: Load = NO_VERDICT) -> list[bool | None]:
    """Feed one window of polls per list (spread over the window); the verdict after each
    window has closed (seen at the first poll of the next)."""
    verdicts = []
    now = 0.0
    for polls in [*kinds, [ON_TIME]]:  # a last poll closes the last window
        step = WINDOW / len(polls)
        for i, lateness in enumerate(polls):
            state = record_poll(state, now + i * step, lateness, INTERVAL)
            if i == 0 and now > 0:
                verdicts.append(state.overloaded)
        now += WINDOW
    return verdicts


def test_the_bound_is_a_fifth_of_the_interval_and_at_least_a_second() -> None:
    assert late_after(5.0) == 1.0
    assert late_after(1.0) == 1.0
    assert late_after(60.0) == 12.0


def test_late_windows_in_a_row_turn_it_and_on_time_windows_turn_it_back() -> None:
    verdicts = windows([[LATE] * 20] * LATE_WINDOWS + [[ON_TIME] * 20] * ON_TIME_WINDOWS)
    assert verdicts[: LATE_WINDOWS - 1] == [None] * (LATE_WINDOWS - 1)
    assert verdicts[LATE_WINDOWS - 1 : -1] == [True] * ON_TIME_WINDOWS
    assert verdicts[-1] is False


def test_a_window_is_late_from_a_small_share_of_late_polls() -> None:
    some_late = [LATE] * 5 + [ON_TIME] * 95  # LATE_SHARE of them
    assert LATE_SHARE * 100 <= 5
    assert windows([some_late] * LATE_WINDOWS)[-1] is True
    few_late = [LATE] * 4 + [ON_TIME] * 96
    assert windows([few_late] * 10)[-1] is None  # neither late nor on time: no verdict


def test_a_steady_noisy_overload_never_turns_back() -> None:
    """Thousands of polls a window, most late by a random amount and some on time: the
    verdict a DirectService's few samples would flip on holds for the whole process."""
    rng = random.Random(7)
    noisy = [[rng.choice([LATE, LATE, ON_TIME, BETWEEN, 5.0]) for _ in range(3000)]]
    verdicts = windows(noisy * 60)
    assert verdicts[LATE_WINDOWS - 1 :] == [True] * (60 - LATE_WINDOWS + 1)


def test_a_window_in_between_holds_the_verdict_and_breaks_both_runs() -> None:
    between = [[BETWEEN] * 20]
    late, on_time = [[LATE] * 20], [[ON_TIME] * 20]
    assert windows(late * (LATE_WINDOWS - 1) + between + late * (LATE_WINDOWS - 1))[-1] is None
    overloaded = Load(True)
    runs = on_time * (ON_TIME_WINDOWS - 1) + between + on_time * (ON_TIME_WINDOWS - 1)
    assert windows(runs, overloaded)[-1] is True


def test_windows_of_a_start_up_hold_the_verdict_and_break_both_runs() -> None:
    """Late polls while first passes are pending (a sync) never turn it, however long the
    sync; the late windows after it count from the sync's end."""
    state, now = NO_VERDICT, 0.0

    def window(lateness: float, starting: bool) -> None:
        nonlocal state, now
        for i in range(20):
            state = record_poll(state, now + i * WINDOW / 20, lateness, INTERVAL, starting)
        now += WINDOW

    for _ in range(3 * LATE_WINDOWS):  # a sync three times as long as a late run
        window(LATE, starting=True)
    for _ in range(LATE_WINDOWS - 1):  # then late, but one window short of a run
        window(LATE, starting=False)
    window(ON_TIME, starting=False)  # closes the last late window
    assert state.overloaded is None and state.late_windows == LATE_WINDOWS - 1
    state = Load(True, now)  # overloaded: a start-up window breaks the run back, too
    for starting in [False] * (ON_TIME_WINDOWS - 1) + [True] + [False] * (ON_TIME_WINDOWS - 1):
        window(ON_TIME, starting)
    window(ON_TIME, False)
    assert state.overloaded is True


def test_a_time_without_polls_is_no_window() -> None:
    state = NO_VERDICT
    times = [k * k * WINDOW for k in range(LATE_WINDOWS + 1)]  # one late poll each, far apart
    for at in times:
        state = record_poll(state, at, LATE, INTERVAL)
    assert state.late_windows == LATE_WINDOWS  # each closed, late: the gaps between count not
    assert state.overloaded is True


@given(st.lists(st.sampled_from(["late", "on_time", "between"]), max_size=120))
def test_the_verdict_never_turns_more_often_than_its_runs_allow(kinds: list[str]) -> None:
    polls = {"late": [LATE] * 10, "on_time": [ON_TIME] * 10, "between": [BETWEEN] * 10}
    verdicts = windows([polls[k] for k in kinds])
    turns = [i for i in range(1, len(verdicts)) if verdicts[i] != verdicts[i - 1]]
    for before, after in itertools.pairwise(turns):
        assert after - before >= min(LATE_WINDOWS, ON_TIME_WINDOWS)
    for i in turns:
        expected = "late" if verdicts[i] else "on_time"
        run_length = LATE_WINDOWS if verdicts[i] else ON_TIME_WINDOWS
        assert kinds[i - run_length + 1 : i + 1] == [expected] * run_length
