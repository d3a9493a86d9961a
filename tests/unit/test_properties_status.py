"""Properties of the status machine (api/status.py next_status): applying one poll result
twice changes nothing the second time and raises no condition Event; lastTransitionTime
moves only when a condition's status does; condition Events come only with transitions.
The old status is what earlier polls left, or anything another writer put there."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.api.reasons import EventReason, Reason
from directservice.api.status import PollResult, next_status
from properties import BOUNDED, json_values, texts

pytestmark = pytest.mark.unit

TIMES = tuple(f"2030-01-01T00:00:{s:02d}Z" for s in range(5))
reasons = st.sampled_from(list(Reason))
optional_text = st.none() | texts(30)
poll_results = st.builds(
    PollResult,
    generation=st.integers(1, 4),
    provider=st.sampled_from(("paiEas", "static")),
    now=st.sampled_from(TIMES),
    ready=st.integers(0, 3),
    total=st.integers(0, 3),
    published_changed=st.booleans(),
    failure_reason=st.none() | reasons,
    failure_message=optional_text,
    dropped=st.integers(0, 2),
    dropped_names=st.lists(texts(10), max_size=2).map(tuple),
    effective_interval=st.none() | st.sampled_from(("10s", "1m")),
    rate_limited_message=optional_text,
    blocked_reason=st.none() | reasons,
    blocked_message=optional_text,
    excluded=st.lists(st.sampled_from(("10.0.0.1:80", "10.0.0.2:80")), max_size=2).map(tuple),
    panic=st.none() | st.booleans(),
    stale=st.none() | st.booleans(),
    max_staleness=st.sampled_from(("", "10m")),
)
foreign_conditions = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(("DiscoveryHealthy", "Ready", "HealthPanic", "Stale", "Other"))},
        optional={
            "status": st.sampled_from(("True", "False", "Unknown")),
            "reason": reasons | json_values,
            "lastTransitionTime": st.sampled_from(("2020-01-01T00:00:00Z", *TIMES)),
        },
    )
    | json_values,
    max_size=4,
)
foreign_status = st.dictionaries(texts(8), json_values, max_size=3).flatmap(
    lambda extra: foreign_conditions.map(lambda conds: {**extra, "conditions": conds})
)


@st.composite
def earlier_statuses(draw: st.DrawFn) -> dict[str, Any]:
    """Where a DirectService's status may stand: anything, then a few polls applied."""
    status: dict[str, Any] = draw(st.just({}) | foreign_status)
    for result in draw(st.lists(poll_results, max_size=3)):
        status, _ = next_status(status, result)
    return status


def condition_map(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The first well-formed condition of each type (as next_status reads them)."""
    found: dict[str, Mapping[str, Any]] = {}
    conditions = status.get("conditions")
    for cond in conditions if isinstance(conditions, list) else []:
        if isinstance(cond, Mapping) and isinstance(cond.get("type"), str):
            found.setdefault(cond["type"], cond)
    return found


@BOUNDED
@given(old=earlier_statuses(), result=poll_results)
def test_the_same_result_twice_changes_nothing_more(
    old: dict[str, Any], result: PollResult
) -> None:
    first, _ = next_status(old, result)
    second, events = next_status(first, result)
    assert second == first
    assert [e.reason for e in events if e.reason != EventReason.ENTRIES_DROPPED] == []


@BOUNDED
@given(old=earlier_statuses(), result=poll_results)
def test_transition_times_and_events_follow_status_changes(
    old: dict[str, Any], result: PollResult
) -> None:
    new, events = next_status(old, result)
    before, after = condition_map(old), condition_map(new)
    expected_events = []
    for kind, cond in after.items():
        if kind not in ("DiscoveryHealthy", "Ready", "HealthPanic", "Stale"):
            assert cond == before[kind]  # another writer's condition is kept as it was
            continue
        previous = before.get(kind)
        if previous is not None and previous.get("status") == cond["status"]:
            assert cond["lastTransitionTime"] == previous.get("lastTransitionTime", result.now)
        else:
            assert cond["lastTransitionTime"] == result.now
        turned = previous is None or (previous.get("status"), previous.get("reason")) != (
            cond["status"],
            cond["reason"],
        )
        # A condition appearing with good news is quiet, but for Ready.
        bad = cond["status"] == ("True" if kind in ("HealthPanic", "Stale") else "False")
        quiet_start = previous is None and not bad and kind != "Ready"
        if turned and not quiet_start:
            expected_events.append(cond["reason"])
    condition_events = [e.reason for e in events if e.reason != EventReason.ENTRIES_DROPPED]
    assert sorted(condition_events) == sorted(expected_events)
    dropped_events = [e for e in events if e.reason == EventReason.ENTRIES_DROPPED]
    succeeded = not result.failure_reason and not result.blocked_reason
    assert len(dropped_events) == int(succeeded and result.published_changed and result.dropped > 0)
