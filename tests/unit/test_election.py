"""The elector's steps on a shared Lease store with the API server's optimistic concurrency
(a write over a stale resourceVersion loses), on a clock the test moves. The real API server
is in tests/integration/test_election.py and tests/e2e/test_ha.py."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Mapping

import pytest

from directservice.controller.election import Elector, Ownership
from directservice.core.leases import LeaseRecord, Timing
from directservice.publish.leases import Lease
from directservice.publish.writer import WriteError

T = Timing(duration=15, renew_deadline=10, retry_period=1)


class Store:
    """Leases by name, as the API server keeps them."""

    def __init__(self) -> None:
        self.leases: dict[str, Lease] = {}
        self.versions = itertools.count(1)
        self.writes: list[tuple[str, str]] = []  # (lease, holder written)


class Client:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False  # an API server this replica cannot reach

    async def read(self, name: str) -> Lease | None:
        if self.down:
            raise WriteError("PublishUnavailable", "unreachable")  # type: ignore[arg-type]
        return self.store.leases.get(name)

    async def write(
        self,
        name: str,
        holder: str,
        duration: float,
        current: Lease | None,
        members: Mapping[str, float] | None = None,
    ) -> Lease | None:
        if self.down:
            raise WriteError("PublishUnavailable", "unreachable")  # type: ignore[arg-type]
        now = self.store.leases.get(name)
        if (now is None) != (current is None) or (
            now is not None and current is not None and now.record.version != current.record.version
        ):
            return None  # 409
        lease = Lease(
            LeaseRecord(name, holder, str(next(self.store.versions))),
            dict(members or (now.members if now else {})),
        )
        self.store.leases[name] = lease
        self.store.writes.append((name, holder))
        return lease


class World:
    def __init__(self) -> None:
        self.now = 1000.0
        self.store = Store()
        self.replicas: dict[str, tuple[Elector, Client]] = {}

    def clock(self) -> float:
        return self.now

    def replica(self, name: str, shards: int = 1) -> Elector:
        client = Client(self.store)
        ownership = Ownership(shards=shards, timing=T, clock=self.clock)
        elector = Elector(
            leases=client,  # type: ignore[arg-type]
            ownership=ownership,
            identity=name,
            name="dso",
            timing=T,
            wall=self.clock,
            rng=random.Random(name),
        )
        self.replicas[name] = (elector, client)
        return elector

    def serving(self, shard: int = 0) -> list[str]:
        return [n for n, (e, _) in self.replicas.items() if e.ownership.serving(shard)]

    def run(self, seconds: float, alive: set[str] | None = None, shards: int = 1) -> None:
        """Step every live replica once a retry period; never two servers of one shard."""
        end = self.now + seconds
        while self.now < end:
            for name, (elector, _) in self.replicas.items():
                if alive is None or name in alive:
                    asyncio.run(elector.attempt())
            for shard in range(shards):
                assert len(self.serving(shard)) <= 1, (self.now, shard, self.serving(shard))
            self.now += T.retry_period


def test_one_of_three_replicas_serves_and_renews_only_every_half_deadline() -> None:
    world = World()
    for name in "abc":
        world.replica(name)
    world.run(2)
    assert len(world.serving()) == 1
    writes = len(world.store.writes)
    world.run(60)
    assert len(world.serving()) == 1
    assert len(world.store.writes) - writes == 60 // 5  # one renewal per renew_deadline / 2


def test_a_killed_leader_is_replaced_only_after_a_lease_duration_and_never_overlaps() -> None:
    world = World()
    for name in "abc":
        world.replica(name)
    world.run(3)
    (leader,) = world.serving()
    others = set("abc") - {leader}
    killed_at = world.now
    world.run(30, alive=others)  # the leader is frozen (SIGKILL): the run asserts no overlap
    (successor,) = world.serving()
    assert successor != leader
    assert world.now - killed_at >= T.duration


def test_a_leader_that_cannot_reach_the_api_server_stops_serving_before_anyone_takes_over() -> None:
    world = World()
    a, b = world.replica("a"), world.replica("b")
    world.run(2, alive={"a"})
    assert world.serving() == ["a"]
    world.replicas["a"][1].down = True  # a lives but can no longer renew
    stopped = taken = None
    for _ in range(40):
        world.run(1)
        if stopped is None and not a.ownership.serving(0):
            stopped = world.now
        if taken is None and b.ownership.serving(0):
            taken = world.now
    assert stopped is not None and taken is not None
    assert taken - stopped >= T.duration - T.renew_deadline - T.retry_period


def test_a_graceful_stop_hands_over_within_one_retry_period() -> None:
    world = World()
    a, _ = world.replica("a"), world.replica("b")
    world.run(2, alive={"a"})
    world.run(2)
    assert world.serving() == ["a"]
    asyncio.run(a.stop())
    assert world.serving() == []
    world.run(1, alive={"b"})
    assert world.serving() == ["b"]


@pytest.mark.parametrize("shards", [4, 7])
def test_shards_spread_to_a_fair_share_and_move_when_a_replica_dies(shards: int) -> None:
    world = World()
    for name in "ab":
        world.replica(name, shards)
    world.run(30, shards=shards)
    held = {n: e.ownership.held() for n, (e, _) in world.replicas.items()}
    assert sorted(len(h) for h in held.values()) == sorted([shards // 2, shards - shards // 2])
    assert set().union(*held.values()) == set(range(shards))
    world.replica("c", shards)
    world.run(30, shards=shards)
    counts = sorted(len(e.ownership.held()) for e, _ in world.replicas.values())
    assert max(counts) <= -(-shards // 3) and sum(counts) == shards
    world.run(60, alive={"a", "b"}, shards=shards)  # c dies: its shards move, none is lost
    served = set().union(*(world.replicas[n][0].ownership.held() for n in "ab"))
    assert served == set(range(shards))


def test_passes_in_flight_end_before_a_release_frees_the_lease() -> None:
    world = World()
    a = world.replica("a")
    world.run(1)
    order: list[str] = []

    async def scenario() -> None:
        async def a_pass() -> None:
            with a.ownership.passing(0):
                await asyncio.sleep(0.05)
                order.append("pass ended")

        task = asyncio.create_task(a_pass())
        await asyncio.sleep(0)
        await a.stop()
        order.append("released")
        await task

    asyncio.run(scenario())
    assert order == ["pass ended", "released"]
    assert world.store.leases["dso-shard-0"].record.holder == ""


def test_a_lone_replica_whose_renewals_lapsed_takes_its_own_lease_back() -> None:
    """Nobody else can take the Lease over: if the holder did not take back the Lease that
    still names it, its shard would go unserved for good."""
    world = World()
    a = world.replica("a")
    world.run(2)
    assert world.serving() == ["a"]
    world.replicas["a"][1].down = True
    world.run(T.renew_deadline + 2)
    assert world.serving() == []  # lapsed on its own deadline
    world.replicas["a"][1].down = False
    world.run(T.retry_period)
    assert a.ownership.serving(0)


def test_a_lapsed_holder_takes_back_only_its_fair_share() -> None:
    world = World()
    a, b = world.replica("a", 4), world.replica("b", 4)
    world.run(30, shards=4)
    assert len(a.ownership.held()) == len(b.ownership.held()) == 2
    world.replicas["a"][1].down = True
    world.run(T.renew_deadline + 1, shards=4)  # a lapses; b cannot take over yet
    assert a.ownership.held() == set()
    world.replicas["a"][1].down = False
    world.run(30, shards=4)
    assert sorted(len(e.ownership.held()) for e, _ in world.replicas.values()) == [2, 2]


def test_the_next_step_is_paced_from_the_start_of_the_last_one() -> None:
    world = World()
    a = world.replica("a")
    started = world.now
    world.now += 0.5  # the step took half a retry period (a slow API server)
    wait = a.next_step_in(started)
    assert 0.8 * T.retry_period - 0.5 <= wait <= T.retry_period - 0.5
    world.now = started + 3 * T.retry_period  # a step longer than the period: at once
    assert a.next_step_in(started) == 0.0
