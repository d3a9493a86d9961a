"""The status write allowance: a burst, then one write per refill period, never more."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.core.allowance import Allowance

pytestmark = pytest.mark.unit


def test_a_burst_then_one_per_refill_period() -> None:
    allowance = Allowance.full(3, 10.0)
    for _ in range(3):
        allowance, wait = allowance.spend(100.0)
        assert wait == 0.0
    held, wait = allowance.spend(101.0)
    assert held is allowance and wait == pytest.approx(9.0)
    allowance, wait = allowance.spend(110.0)
    assert wait == 0.0
    assert allowance.spend(110.0)[1] == pytest.approx(10.0)


def test_an_idle_allowance_fills_up_to_the_burst_and_no_further() -> None:
    allowance = Allowance.full(2, 5.0)
    allowance, _ = allowance.spend(0.0)
    allowance, _ = allowance.spend(0.0)
    for _ in range(2):
        allowance, wait = allowance.spend(1_000.0)
        assert wait == 0.0
    assert allowance.spend(1_000.0)[1] > 0


@given(st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=300))
def test_writes_in_any_window_stay_within_burst_plus_refills(gaps: list[float]) -> None:
    allowance, now, written = Allowance.full(5, 6.0), 0.0, []
    for gap in gaps:
        now += gap
        allowance, wait = allowance.spend(now)
        if wait == 0.0:
            written.append(now)
        else:
            assert wait <= 6.0 + 1e-9
    for i, start in enumerate(written):
        in_minute = [t for t in written[i:] if t < start + 60.0]
        assert len(in_minute) <= 5 + 10
