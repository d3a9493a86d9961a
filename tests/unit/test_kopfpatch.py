"""kopf's start-up barrier, patched: its waiters wake when the set's verdict changes, not
once per toggle added or dropped, and still wake when it does."""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import processing

from directservice.controller.kopfpatch import drop_managed_fields, notify_on_change_only

pytestmark = pytest.mark.unit


class CountingCondition(asyncio.Condition):
    def __init__(self) -> None:
        super().__init__()
        self.notified = 0

    def notify_all(self) -> None:
        self.notified += 1
        super().notify_all()


def test_a_thousand_objects_notify_only_when_the_verdict_turns() -> None:
    assert notify_on_change_only() and notify_on_change_only()  # once, however often asked

    async def scenario() -> tuple[int, int, bool]:
        barrier = aiotoggles.ToggleSet(all)
        condition = CountingCondition()
        barrier._condition = condition
        toggles = [await barrier.make_toggle(name=f"object {i}") for i in range(1000)]
        waiters = [asyncio.ensure_future(barrier.wait_for(True)) for _ in range(1000)]
        off = asyncio.ensure_future(barrier.wait_for(False))  # already so: returns at once
        await off
        for toggle in toggles[:-1]:
            await barrier.drop_toggle(toggle)
        await asyncio.sleep(0)
        early = sum(1 for w in waiters if w.done())
        await barrier.drop_toggles(toggles[-1:])
        await asyncio.gather(*waiters)
        return condition.notified, early, barrier.is_on()

    notified, early, on = asyncio.run(scenario())
    assert early == 0, "nobody wakes while one object is still unindexed"
    # The empty set was on; the first object turned it off, the last one on again: two
    # changes, where kopf alone notifies once per toggle added or dropped (2,000 here).
    assert on and notified == 2


def test_adding_an_off_toggle_to_an_empty_set_turns_it_off_and_says_so() -> None:
    notify_on_change_only()

    async def scenario() -> bool:
        barrier = aiotoggles.ToggleSet(all)
        waiting = asyncio.ensure_future(barrier.wait_for(False))  # all([]) is on
        await asyncio.sleep(0)
        toggle = await barrier.make_toggle(name="late")
        await waiting
        await barrier.drop_toggle(toggle)
        return barrier.is_on()

    assert asyncio.run(scenario())


def test_events_reach_kopf_without_managed_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []

    async def kopfs(*args: object, raw_event: dict[str, object], **kwargs: object) -> str:
        seen.append(raw_event)
        return "processed"

    monkeypatch.setattr(processing, "process_resource_event", kopfs)
    drop_managed_fields()
    drop_managed_fields()  # once, however often asked
    patched = processing.process_resource_event
    body = {
        "metadata": {"name": "a", "managedFields": [{"manager": "kubectl"}], "uid": "u"},
        "spec": {"x": 1},
    }
    answer = asyncio.run(patched(raw_event={"type": "ADDED", "object": body}, memories=None))
    assert answer == "processed"
    assert seen[0]["object"] == {"metadata": {"name": "a", "uid": "u"}, "spec": {"x": 1}}
    # An event without metadata, or with no object, passes as it is.
    asyncio.run(patched(raw_event={"type": "ERROR", "object": None}))
    assert seen[1] == {"type": "ERROR", "object": None}
