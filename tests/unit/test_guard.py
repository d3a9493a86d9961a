"""The mass-deletion guard: big shrinks wait for confirmation, everything else applies."""

from __future__ import annotations

import pytest

from directservice.core.guard import (
    SHRINK_HELD,
    EndpointId,
    GuardState,
    ShrinkPolicy,
    Verdict,
    answer_ids,
    check_shrink,
    published_ids,
)
from directservice.core.model import (
    AddressFamily,
    EndpointState,
    Instance,
    PublishedSlice,
    SliceContent,
    SliceKey,
)

pytestmark = pytest.mark.unit

DEFAULT = ShrinkPolicy()


def ids(count: int, start: int = 1, port: int = 80) -> frozenset[EndpointId]:
    return frozenset((f"10.0.0.{n}", port) for n in range(start, start + count))


def polls(
    published: frozenset[EndpointId],
    answers: list[frozenset[EndpointId]],
    policy: ShrinkPolicy = DEFAULT,
) -> list[Verdict]:
    """Feed answers one poll at a time; the published set changes only when applied."""
    state = GuardState()
    verdicts = []
    for answer in answers:
        verdict = check_shrink(published, answer, policy, state)
        state = verdict.state
        if verdict.apply:
            published = answer
        verdicts.append(verdict)
    return verdicts


def test_first_publication_and_growth_apply_at_once() -> None:
    assert check_shrink(frozenset(), ids(3), DEFAULT).apply
    assert check_shrink(ids(3), ids(10), DEFAULT).apply


def test_removing_exactly_the_limit_applies() -> None:
    verdict = check_shrink(ids(10), ids(5), DEFAULT)  # 5 of 10 = 50 %, not more
    assert verdict.apply and verdict.reason is None and verdict.message == ""


def test_removing_more_is_held_until_seen_three_times() -> None:
    verdicts = polls(ids(10), [ids(4)] * 3)
    assert [v.apply for v in verdicts] == [False, False, True]
    assert verdicts[0].reason == SHRINK_HELD
    assert verdicts[0].message == "answer would remove 6 of 10 endpoints; confirmed 1/3"
    assert verdicts[1].message == "answer would remove 6 of 10 endpoints; confirmed 2/3"
    assert verdicts[2].confirmed_shrink
    assert verdicts[2].state == GuardState()


def test_a_different_shrinking_answer_restarts_the_count() -> None:
    verdicts = polls(ids(10), [ids(4), ids(3), ids(3), ids(3)])
    assert [(v.apply, v.seen) for v in verdicts] == [(False, 1), (False, 1), (False, 2), (True, 3)]


def test_a_healthy_answer_in_between_resets_the_hold() -> None:
    verdicts = polls(ids(10), [ids(4), ids(10), ids(4), ids(4)])
    assert [v.apply for v in verdicts] == [False, True, False, False]
    assert verdicts[-1].seen == 2


def test_weights_do_not_matter_only_addresses() -> None:
    held = answer_ids([Instance("10.0.0.1", 80, weight=0)])
    same = answer_ids([Instance("10.0.0.1", 80, weight=100)])
    assert held == same


def test_port_changes_count_as_removals() -> None:
    # 10.0.0.x:80 -> 10.0.0.x:81 removes every published endpoint (DNS SRV loses them all).
    verdict = check_shrink(ids(4), ids(4, port=81), DEFAULT)
    assert not verdict.apply and verdict.removed == 4


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (ShrinkPolicy(max_percent=100), [True]),  # guard off
        (ShrinkPolicy(confirmations=1), [True]),  # confirmed by its first sighting
        (ShrinkPolicy(max_percent=0, confirmations=2), [False, True]),  # any removal waits
    ],
)
def test_policy_edges(policy: ShrinkPolicy, expected: list[bool]) -> None:
    verdicts = polls(ids(10), [ids(9)] * len(expected), policy)
    assert [v.apply for v in verdicts] == expected


def test_losing_everything_but_one_of_two_is_held() -> None:
    assert not check_shrink(ids(2), ids(1, start=3), DEFAULT).apply


def test_published_ids_reads_slices() -> None:
    key = SliceKey(AddressFamily.IPV4, 8080, None)
    content = SliceContent(
        key=key,
        port_name="http",
        endpoints=(("10.0.0.1", EndpointState(True, 100)), ("10.0.0.2", EndpointState(False, 0))),
    )
    slices = [
        PublishedSlice("svc-v4-0", "1", content),
        PublishedSlice("svc-v4-1", "2", None),  # unreadable: contributes nothing
    ]
    assert published_ids(slices) == {("10.0.0.1", 8080), ("10.0.0.2", 8080)}


def test_a_changed_source_applies_at_once() -> None:
    held = check_shrink(ids(10), ids(1), DEFAULT, GuardState(pending=ids(1), seen=1))
    assert not held.apply
    verdict = check_shrink(ids(10), ids(1), DEFAULT, held.state, source_changed=True)
    assert verdict.apply and verdict.state == GuardState()
