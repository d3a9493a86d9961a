"""A Reconciler's real poll loop over five minutes of virtual time.

The event loop's clock is virtual: whenever every task waits, time leaps to the next timer,
so Reconciler.run (its start jitter, poll intervals, backoff and wake-ups) runs unchanged and
five minutes pass in a fraction of a second. The cluster is a dict behind the writer and the
view; the provider is `static`, made to fail on every other poll.

- Discovery flapping between healthy and failing on every poll: the published endpoints are
  written once and never again, status writes stay within the allowance (a burst, then one
  per STATUS_REFILL seconds) though the condition turns on every poll, and an Event is
  posted only with a written status whose condition turned.
- A loop that runs every timer 3 s late: condition Overloaded turns True after six late
  windows of polls and back after six on time, one status write and one Event each, and
  nothing published changes.
- The same lag while another DirectService's first pass is still pending (a sync): no
  verdict, however long; once that pass is done, six late windows turn it.
- A stored spec the operator cannot parse: reported InvalidSpec once, then re-checked at the
  INVALID_SPEC_RETRY pace, never faster (no crash loop, no write after the first).
"""

from __future__ import annotations

import asyncio
import itertools
import selectors
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from directservice.api.names import Owner
from directservice.api.reasons import Reason
from directservice.api.status import EventSpec
from directservice.controller import looplag
from directservice.controller.reconciler import INVALID_SPEC_RETRY, Reconciler, Shared
from directservice.controller.reporter import STATUS_BURST, STATUS_REFILL
from directservice.core.model import Discovery, DiscoveryError, PublishedSlice, ServiceShape
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.static import StaticProvider
from directservice.obs import metrics
from directservice.publish.render import read_endpoint_slice, read_service_shape
from directservice.publish.writer import KubeWriter

pytestmark = pytest.mark.unit

MINUTES = 5
OWNER = Owner("ns", "flappy", "uid-1")
INSTANCES = [{"ip": "10.20.0.11", "port": 9000}, {"ip": "10.20.0.12", "port": 9000}]


class _LeapingSelector(selectors.BaseSelector):
    """Real readiness without blocking: when nothing is ready, the loop's clock leaps by the
    timeout the loop would have slept."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if not ready:
            if timeout is None:
                raise AssertionError("deadlock: every task waits and no timer is set")
            self._loop.now += timeout + self._loop.lag
        return ready

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        self.lag = 0.0  # s every timer runs late: a busy loop
        super().__init__(_LeapingSelector(self))

    def time(self) -> float:
        return self.now


@dataclass
class FakeCluster(KubeWriter):
    """The API server and the operator's watches in one: writes land in dicts the view reads
    at once. Counts every write."""

    slices_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    service_body: dict[str, Any] | None = None
    writes: Counter[str] = field(default_factory=Counter)
    events: list[EventSpec] = field(default_factory=list)
    version: int = 0

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        meta = dict(body["metadata"], resourceVersion=str(self.version))
        return dict(body, metadata=meta)

    async def create_slice(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["create slice"] += 1
        stored = self.slices_by_name[body["metadata"]["name"]] = self._stored(body)
        return stored

    async def replace_slice(self, body: Mapping[str, Any], resource_version: str) -> dict[str, Any]:
        self.writes["replace slice"] += 1
        stored = self.slices_by_name[body["metadata"]["name"]] = self._stored(body)
        return stored

    async def delete_slice(self, namespace: str, name: str, resource_version: str) -> None:
        self.writes["delete slice"] += 1
        self.slices_by_name.pop(name, None)

    async def create_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["create service"] += 1
        self.service_body = self._stored(body)
        return self.service_body

    async def patch_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.writes["patch service"] += 1
        self.service_body = self._stored(body)
        return self.service_body

    async def patch_status(self, owner: Owner, status: Mapping[str, Any]) -> None:
        self.writes["patch status"] += 1

    async def post_event(self, owner: Owner, event: EventSpec) -> None:
        self.events.append(event)

    # The ClusterView side.
    def slices(self, namespace: str, name: str) -> list[PublishedSlice]:
        return [read_endpoint_slice(s) for s in self.slices_by_name.values()]

    def service(self, namespace: str, name: str) -> ServiceShape | None:
        return read_service_shape(self.service_body) if self.service_body else None


class Never:
    """kopf's daemon stop flag, never raised: the test ends the loop with close()."""

    def __bool__(self) -> bool:
        return False

    async def wait(self) -> object:
        await asyncio.Event().wait()
        return None


def body(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": OWNER.name, "namespace": OWNER.namespace, "generation": 1},
            "spec": spec}  # fmt: skip


def run_for(seconds: float, rec: Reconciler, source: dict[str, Any]) -> float:
    """Run the poll loop for `seconds` of virtual time; returns the virtual time it took."""

    async def main() -> None:
        loop = asyncio.ensure_future(rec.run(lambda: source, Never()))
        await asyncio.sleep(seconds)
        await rec.close()
        await loop
        await rec.shared.http.close()

    virtual = VirtualTimeLoop()
    try:
        virtual.run_until_complete(main())
    finally:
        virtual.close()
    return virtual.now


def run_virtual(main: Callable[[VirtualTimeLoop], Awaitable[None]]) -> None:
    """Run `main` on a fresh virtual-time loop, which it may lag."""
    virtual = VirtualTimeLoop()
    try:
        virtual.run_until_complete(main(virtual))
    finally:
        virtual.close()


async def close_all(
    recs: list[Reconciler], loops: list[asyncio.Future[None]], http: HttpClient
) -> None:
    for rec in recs:
        await rec.close()
    await asyncio.gather(*loops)
    await http.close()


def reconciler(cluster: FakeCluster) -> Reconciler:
    return Reconciler(OWNER, Shared(writer=cluster, http=HttpClient(), view=cluster))


def test_flapping_every_poll_for_five_minutes(monkeypatch: pytest.MonkeyPatch) -> None:
    real_discover = StaticProvider.discover
    outcomes: list[bool] = []  # True: a healthy answer

    async def flapping(self: StaticProvider, http: HttpClient) -> Discovery:
        healthy = not outcomes or not outcomes[-1]  # the first poll, then every other one
        outcomes.append(healthy)
        if not healthy:
            raise DiscoveryError(Reason.SERVER_ERROR, "HTTP 503 from the discovery API")
        return await real_discover(self, http)

    monkeypatch.setattr(StaticProvider, "discover", flapping)
    cluster = FakeCluster()
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "1s",
            "port": {"name": "http"}}  # fmt: skip
    elapsed = run_for(MINUTES * 60, reconciler(cluster), body(spec))

    assert elapsed >= MINUTES * 60
    # A healthy poll waits the interval (±5 %), a failed one the first backoff (0.8-1 x).
    pairs = len(outcomes) / 2
    assert MINUTES * 60 / 2.05 - 1 <= pairs <= MINUTES * 60 / 1.75 + 1
    # Published once; nothing the flapping did touched a slice or the Service again.
    assert cluster.writes["create slice"] == cluster.writes["create service"] == 1
    assert sum(n for kind, n in cluster.writes.items() if "status" not in kind) == 2
    downs = sum(1 for a, b in itertools.pairwise(outcomes) if a and not b)
    assert downs >= 140
    # Status writes draw on the allowance: a burst, then one per refill period, however
    # often the condition turns. Each written status tells the truth of its moment, and its
    # Event is the turn since the status written before: flips between writes cost nothing.
    bound = STATUS_BURST + MINUTES * 60 / STATUS_REFILL + 1
    assert cluster.writes["patch status"] <= bound < len(outcomes) / 5
    turns = [str(e.reason) for e in cluster.events if e.reason != "EndpointsPublished"]
    # The first status says Healthy quietly (EndpointsPublished speaks for it); then turns.
    assert turns[0] == "ServerError" and len(turns) <= cluster.writes["patch status"]
    assert all(a != b for a, b in itertools.pairwise(turns)), "an Event only for a turn"
    assert len(turns) >= bound / 2  # the allowance is used, the flapping is reported
    assert all(e.type == "Warning" for e in cluster.events if e.reason == "ServerError")


def test_an_unparsable_spec_is_rechecked_at_the_invalid_spec_pace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = FakeCluster()
    rec = reconciler(cluster)
    polls: list[float] = []
    real_poll = rec.poll_once

    async def counted(source: Mapping[str, Any]) -> float:
        polls.append(asyncio.get_running_loop().time())
        return await real_poll(source)

    monkeypatch.setattr(rec, "poll_once", counted)
    spec = {"provider": {"static": {"instances": INSTANCES}}, "port": "http"}
    run_for(MINUTES * 60, rec, body(spec))

    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert len(polls) == MINUTES * 60 // INVALID_SPEC_RETRY  # the first within the jitter
    assert all(gap >= INVALID_SPEC_RETRY - 1e-6 for gap in gaps), gaps
    assert cluster.writes == {"patch status": 1}
    assert sorted(str(e.reason) for e in cluster.events) == ["InvalidSpec", "NoReadyEndpoints"]


def test_a_lagging_loop_turns_overloaded_once_and_back_once() -> None:
    cluster = FakeCluster()
    rec = reconciler(cluster)
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "5s",
            "port": {"name": "http"}}  # fmt: skip
    source = body(spec)
    seen: list[float] = []

    async def main(virtual: VirtualTimeLoop) -> None:
        loop = asyncio.ensure_future(rec.run(lambda: source, Never()))
        await asyncio.sleep(20)  # the first poll, on time
        virtual.lag = 3.0  # over the 1 s bound of a 5 s interval
        await asyncio.sleep(120)
        seen.append(metrics.REGISTRY.get_sample_value("directservice_overloaded") or 0.0)
        virtual.lag = 0.0
        await asyncio.sleep(90)
        seen.append(metrics.REGISTRY.get_sample_value("directservice_overloaded") or 0.0)
        await rec.close()
        await loop
        await rec.shared.http.close()

    run_virtual(main)

    reasons = [str(e.reason) for e in cluster.events]
    assert reasons == ["EndpointsPublished", "Overloaded", "PollsOnTime"]
    assert cluster.writes["patch status"] == 3  # the first poll, and once each way
    assert cluster.writes["create slice"] == 1 and cluster.writes["replace slice"] == 0
    assert seen == [1.0, 0.0]


class GatedCluster(FakeCluster):
    """A cluster whose first Service create waits for `opened`: a first pass in a sync."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()

    async def create_service(self, body: Mapping[str, Any]) -> dict[str, Any]:
        await self.opened.wait()
        return await super().create_service(body)


def test_no_verdict_while_a_first_pass_is_pending() -> None:
    load, http = looplag.LoopLoad(), HttpClient()
    synced, syncing = FakeCluster(), GatedCluster()
    polling = Reconciler(OWNER, Shared(synced, http, synced, load=load))
    waiting = Reconciler(Owner("ns", "new", "uid-2"), Shared(syncing, http, syncing, load=load))
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "5s",
            "port": {"name": "http"}}  # fmt: skip
    verdicts: list[bool | None] = []

    async def main(virtual: VirtualTimeLoop) -> None:
        loops = [asyncio.ensure_future(r.run(lambda: body(spec), Never()))
                 for r in (polling, waiting)]  # fmt: skip
        await asyncio.sleep(20)
        virtual.lag = 3.0  # over the 1 s bound of a 5 s interval
        await asyncio.sleep(300)  # five late runs' worth, while the other's first pass waits
        verdicts.append(load.overloaded)
        assert load.first_passes == 1
        syncing.opened.set()
        await asyncio.sleep(120)
        verdicts.append(load.overloaded)
        assert load.first_passes == 0
        await close_all([polling, waiting], loops, http)

    run_virtual(main)
    assert verdicts == [None, True]
    assert [str(e.reason) for e in synced.events].count("Overloaded") == 1


def test_a_fleet_reports_the_verdict_at_the_pace_of_one_shared_allowance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """60 DirectServices, one process: when the verdict turns, their status writes that only
    report it are spread by the process's allowance (here 2 at once, then one a second), not
    written in one burst, and each still reports it exactly once. (A loop whose every timer
    runs 3 s late polls in bursts, and each burst finds at most 2 writes allowed.)"""
    monkeypatch.setattr(looplag, "REPORT_BURST", 2)
    monkeypatch.setattr(looplag, "REPORT_REFILL", 1.0)
    load, http = looplag.LoopLoad(), HttpClient()
    written: list[float] = []
    fleet: list[tuple[Reconciler, FakeCluster]] = []
    for i in range(60):
        cluster = FakeCluster()
        owner = Owner("ns", f"svc-{i}", f"uid-{i}")
        fleet.append((Reconciler(owner, Shared(cluster, http, cluster, load=load)), cluster))
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "5s",
            "port": {"name": "http"}}  # fmt: skip

    async def main(virtual: VirtualTimeLoop) -> None:
        for _, cluster in fleet:
            real = cluster.patch_status

            async def timed(owner: Owner, status: Mapping[str, Any], real: Any = real) -> None:
                if any(c.get("type") == "Overloaded" for c in status.get("conditions", [])):
                    written.append(virtual.time())
                await real(owner, status)

            cluster.patch_status = timed  # type: ignore[method-assign]
        loops = [asyncio.ensure_future(rec.run(lambda: body(spec), Never())) for rec, _ in fleet]
        await asyncio.sleep(20)
        virtual.lag = 3.0
        await asyncio.sleep(400)
        await close_all([rec for rec, _ in fleet], loops, http)

    run_virtual(main)

    for _, cluster in fleet:
        assert [str(e.reason) for e in cluster.events].count("Overloaded") == 1
    assert len(written) == 60
    for i, start in enumerate(written):  # within any second: the burst and one refill
        assert sum(1 for t in written[i:] if t - start < 1.0) <= 3
    assert written[-1] - written[0] >= 50, "spread over about a minute, not one burst"


def test_polls_start_every_interval_however_long_discovery_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pollInterval is how often discovery is polled: a call that takes 2 s of a 5 s
    interval does not stretch the pace to 7 s. A failure's backoff runs from its end."""
    real_discover = StaticProvider.discover
    starts: list[float] = []

    async def slow(self: StaticProvider, http: HttpClient) -> Discovery:
        starts.append(asyncio.get_running_loop().time())
        await asyncio.sleep(2.0)
        return await real_discover(self, http)

    monkeypatch.setattr(StaticProvider, "discover", slow)
    cluster = FakeCluster()
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "5s",
            "port": {"name": "http"}}  # fmt: skip
    run_for(MINUTES * 60, reconciler(cluster), body(spec))

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps and all(4.75 - 1e-6 <= gap <= 5.25 + 1e-6 for gap in gaps), gaps
    assert len(starts) >= MINUTES * 60 / 5.25 - 2


def test_a_poll_longer_than_its_interval_counts_as_late(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop so busy that each pass takes longer than the interval starts the next poll at
    once: no timer runs late, but the poll does, and the verdict must see it."""
    real_discover = StaticProvider.discover

    async def slower_than_the_interval(self: StaticProvider, http: HttpClient) -> Discovery:
        await asyncio.sleep(8.0)
        return await real_discover(self, http)

    monkeypatch.setattr(StaticProvider, "discover", slower_than_the_interval)
    cluster = FakeCluster()
    rec = reconciler(cluster)
    spec = {"provider": {"static": {"instances": INSTANCES}}, "pollInterval": "5s",
            "port": {"name": "http"}}  # fmt: skip
    run_for(150, rec, body(spec))
    assert rec.shared.load.overloaded is True
    assert [str(e.reason) for e in cluster.events].count("Overloaded") == 1
