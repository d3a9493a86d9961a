"""The overload verdict: late polls in a row turn it, on-time polls in a row turn it back."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.core.overload import (
    LATE_POLLS,
    NO_VERDICT,
    ON_TIME_POLLS,
    Lateness,
    late_after,
    record_lateness,
)

pytestmark = pytest.mark.unit

INTERVAL = 5.0
LATE, ON_TIME, BETWEEN = 3.0, 0.1, 0.75  # s late, against a 1 s bound at a 5 s interval


def run(latenesses: list[float], state: Lateness = NO_VERDICT) -> list[bool | None]:
    verdicts = []
    for lateness in latenesses:
        state = record_lateness(state, lateness, INTERVAL)
        verdicts.append(state.overloaded)
    return verdicts


def test_the_bound_is_a_fifth_of_the_interval_and_at_least_a_second() -> None:
    assert late_after(5.0) == 1.0
    assert late_after(1.0) == 1.0
    assert late_after(60.0) == 12.0


def test_three_late_polls_in_a_row_turn_it_and_six_on_time_turn_it_back() -> None:
    verdicts = run([LATE] * LATE_POLLS + [ON_TIME] * ON_TIME_POLLS)
    assert verdicts[: LATE_POLLS - 1] == [None] * (LATE_POLLS - 1)
    assert verdicts[LATE_POLLS - 1 : LATE_POLLS + ON_TIME_POLLS - 1] == [True] * ON_TIME_POLLS
    assert verdicts[-1] is False


def test_a_poll_in_between_breaks_both_runs() -> None:
    assert run([LATE, LATE, BETWEEN, LATE, LATE])[-1] is None
    overloaded = Lateness(True)
    assert run([ON_TIME] * 5 + [BETWEEN] + [ON_TIME] * 5, overloaded)[-1] is True


@given(st.lists(st.sampled_from([LATE, ON_TIME, BETWEEN]), max_size=200))
def test_the_verdict_never_turns_more_often_than_its_runs_allow(latenesses: list[float]) -> None:
    verdicts = run(latenesses)
    turns = [i for i in range(1, len(verdicts)) if verdicts[i] != verdicts[i - 1]]
    # After the first verdict, a turn needs a full run of the other kind since the last.
    for before, after in itertools.pairwise(turns):
        assert after - before >= min(LATE_POLLS, ON_TIME_POLLS)
    for i in turns:
        expected = LATE if verdicts[i] else ON_TIME
        run_length = LATE_POLLS if verdicts[i] else ON_TIME_POLLS
        assert latenesses[i - run_length + 1 : i + 1] == [expected] * run_length
