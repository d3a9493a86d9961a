"""The sleep between polls: the timer, an edit and a stop end it, with one future each."""

from __future__ import annotations

import asyncio

import pytest

from directservice.controller.wakeup import Wakeup

pytestmark = pytest.mark.unit


def test_a_sleep_runs_out_when_nothing_sets_the_flag() -> None:
    async def scenario() -> tuple[bool, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        woken = await Wakeup().sleep(0.02)
        return woken, loop.time() - started

    woken, slept = asyncio.run(scenario())
    assert not woken and slept >= 0.02


def test_setting_the_flag_ends_a_sleep_at_once_and_cancels_its_timer() -> None:
    async def scenario() -> tuple[bool, list[bool]]:
        wake = Wakeup()
        sleeping = asyncio.ensure_future(wake.sleep(3600))
        await asyncio.sleep(0)  # it sleeps now
        wake.set()
        woken = await sleeping
        timers: list[asyncio.TimerHandle] = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        return woken, [timer.cancelled() for timer in timers]

    woken, timers = asyncio.run(scenario())
    assert woken
    assert all(timers), "the hour-long timer is cancelled (or already dropped), not left to fire"


def test_a_flag_set_before_the_sleep_ends_it_before_it_starts_until_cleared() -> None:
    async def scenario() -> list[bool]:
        wake = Wakeup()
        wake.set()
        seen = [wake.is_set(), await wake.sleep(3600)]
        wake.clear()
        seen += [wake.is_set(), await wake.sleep(0)]
        return seen

    assert asyncio.run(scenario()) == [True, True, False, False]


def test_a_cancelled_sleep_leaves_the_flag_usable() -> None:
    async def scenario() -> bool:
        wake = Wakeup()
        sleeping = asyncio.ensure_future(wake.sleep(3600))
        await asyncio.sleep(0)
        sleeping.cancel()
        await asyncio.gather(sleeping, return_exceptions=True)
        wake.set()  # nobody sleeps: nothing to resolve, no error
        return await wake.sleep(3600)

    assert asyncio.run(scenario())
