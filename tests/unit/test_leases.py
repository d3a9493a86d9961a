"""The election's pure decisions (core/leases.py)."""

from __future__ import annotations

import pytest

from directservice.core.leases import (
    LeaseRecord,
    Sighting,
    Timing,
    fair_share,
    live_members,
    observe,
    orphaned,
    plan_claims,
    serving,
    shard_of,
)

T = Timing(duration=15, renew_deadline=10, retry_period=1)


def seen(holder: str, version: str = "1", since: float = 0.0) -> Sighting:
    return Sighting(LeaseRecord("l", holder, version), since)


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"), [(10, 10, 1), (10, 12, 1), (15, 10, 10), (15, 10, 0)]
)
def test_timing_must_keep_renew_deadline_below_duration(
    duration: float, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        Timing(duration=duration, renew_deadline=deadline, retry_period=retry)


def test_the_expiry_clock_restarts_whenever_the_record_changes() -> None:
    first = observe(None, LeaseRecord("l", "a", "1"), 100.0)
    assert observe(first, LeaseRecord("l", "a", "1"), 130.0) is first  # unchanged: same clock
    renewed = observe(first, LeaseRecord("l", "a", "2"), 130.0)
    assert renewed.since == 130.0


def test_a_lease_unchanged_for_a_duration_is_orphaned_unless_ours() -> None:
    assert not orphaned(seen("other", since=0), "me", 14.9, T)
    assert orphaned(seen("other", since=0), "me", 15.0, T)
    assert orphaned(seen("", since=0), "me", 15.0, T)  # free and nobody took it
    assert not orphaned(seen("me", since=0), "me", 99.0, T)


def test_a_holder_stops_serving_at_the_renew_deadline_before_others_may_take_over() -> None:
    assert not serving(None, 0, T)
    assert serving(100.0, 109.9, T)
    assert not serving(100.0, 110.0, T)
    # The taker's clock starts no earlier than the holder's last renewal was sent: it may take
    # over at 100 + 15 at the earliest, 5 s after the holder stopped writing.
    assert T.duration - T.renew_deadline == 5


def test_shard_of_is_stable_and_in_range() -> None:
    keys = [f"paiEas/host-{i}.example:443" for i in range(2000)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]
    assert set(shards) == {0, 1, 2, 3}
    assert all(350 < shards.count(s) < 650 for s in range(4))  # about 500 each
    assert {shard_of(k, 1) for k in keys} == {0}


def test_one_more_shard_moves_only_the_keys_it_wins() -> None:
    keys = [f"modelArts/ns/secret-{i}" for i in range(5000)]
    before = {k: shard_of(k, 4) for k in keys}
    after = {k: shard_of(k, 5) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert {after[k] for k in moved} == {4}  # every moved key went to the new shard
    assert 0.15 < len(moved) / len(keys) < 0.25  # about 1/5


def test_fair_share_rounds_up() -> None:
    assert [fair_share(4, n) for n in (0, 1, 2, 3, 4, 5)] == [4, 4, 2, 2, 1, 1]


def test_claims_fill_up_to_the_fair_share_and_no_further() -> None:
    claims = plan_claims("a", 4, held=[], free=[0, 1, 2, 3], live_replicas=2)
    assert len(claims.take) == 2 and not claims.release
    claims = plan_claims("a", 4, held=[1], free=[0, 2, 3], live_replicas=2)
    assert len(claims.take) == 1 and 1 not in claims.take


def test_orphaned_shards_are_taken_whatever_the_share() -> None:
    claims = plan_claims("a", 4, held=[0, 1], free=[], orphaned=[2, 3], live_replicas=2)
    assert claims.take == (2, 3)


def test_beyond_the_share_a_replica_releases_only_once_it_may() -> None:
    held = [0, 1, 2, 3]
    assert plan_claims("a", 4, held, [], live_replicas=2).release == ()
    claims = plan_claims("a", 4, held, [], live_replicas=2, may_release=True)
    assert len(claims.release) == 2 and not claims.take


def test_replicas_reach_for_different_shards_first() -> None:
    firsts = {plan_claims(me, 16, [], range(16), live_replicas=16).take for me in "abcd"}
    assert len(firsts) > 1


def test_live_members_drop_old_heartbeats() -> None:
    beats = {"a": 1000.0, "b": 985.5, "c": 985.0}
    assert live_members(beats, 1000.0, T) == {"a", "b"}
