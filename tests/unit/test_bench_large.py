"""The large service's CPU per unchanged poll: the idle operator's own CPU is not charged
to the few polls of one service."""

from __future__ import annotations

import math

import pytest

from bench.large import LargeResult, marginal_ms_per_poll
from bench.report import large_section

pytestmark = pytest.mark.unit


def test_the_idle_operators_cpu_is_taken_out_of_each_poll() -> None:
    # 3 polls in 15 s: 0.3 s of CPU, of which the idle operator (1 % of a core) took 0.15 s.
    assert marginal_ms_per_poll(0.3, 15.0, 3, 0.01) == pytest.approx(50.0)
    assert marginal_ms_per_poll(0.3, 15.0, 3, 0.0) == pytest.approx(100.0)


def test_a_window_cheaper_than_idle_or_without_polls_gives_no_figure() -> None:
    assert math.isnan(marginal_ms_per_poll(0.1, 15.0, 3, 0.01))  # not "0 ms": unresolved
    assert math.isnan(marginal_ms_per_poll(0.3, 15.0, 0, 0.01))


def test_the_section_gives_both_figures() -> None:
    large = LargeResult(
        instances=10_000, slices=100, response_kib=521.0, apply_to_first_poll_s=2.0,
        first_poll_to_all_s=3.5, apply_to_all_s=5.5, cpu_ms_per_unchanged_poll=4.25, steps=[],
        gross_cpu_ms_per_unchanged_poll=33.3, idle_cores=0.0193,
    )  # fmt: skip
    text = large_section(large)[0]
    assert "4.2 ms beyond the idle operator's 1.93 % of a core (33.3 ms with it)" in text
