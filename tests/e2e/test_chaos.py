"""SIGKILL at random points of a busy reconcile loop, and the state still converges.

Twenty DirectServices are created, edited (instance lists in the emulator, specs patched)
and deleted while the operator runs and while it is dead. Each round the operator is killed
at a random moment of that churn (a delay drawn from the round's seeded RNG; seeds printed),
and the restarted process must converge: every slice belongs to a live DirectService, every
endpoint the emulator lists is published exactly once (drainSeconds: 0, so none lingers as
terminating), deleted DirectServices are gone with their finalizer, statuses have caught
up, and then the first identical poll of each writes nothing (directservice_api_writes_total
and every resourceVersion unchanged while each DirectService polls once more).

A control plane and an operator of this module's own: the kills must hit no other test.
CHAOS_SEED=<n> replays a run whose rounds use seeds n, n+1, ...
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from devenv.procs import http_ok
from directservice.emulator.runner import EmulatorThread
from faultkit import (
    INTERNAL_ERRORS,
    WRITES,
    dsvc_path,
    listed,
    merge_patch,
    metric_total,
    published_versions,
)
from support import (
    all_dsvcs,
    condition,
    create,
    directservice,
    discovery_count,
    emulator_requests,
    eventually,
    pai_eas,
    running,
    wait_for_count,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "chaos"
LIVE = 20
ROUNDS = 20
BASE_SEED = int(os.environ.get("CHAOS_SEED", "7100"))
MAX_KILL_DELAY = 2.0  # seconds into the churn; the restart and catch-up take about as long
SLICE_SIZES = (2, 3, 5, 100)
PORT_NAMES = ("http", "grpc")
SERVICE_LABEL = "kubernetes.io/service-name"


@dataclass
class Tracked:
    """What one live DirectService should publish."""

    eas: str
    index: int
    instances: list[tuple[str, int]]
    per_slice: int = 3
    port_name: str = "http"


@dataclass
class World:
    cp: ControlPlane
    emulator: EmulatorThread
    live: dict[str, Tracked] = field(default_factory=dict)
    made: int = 0

    def spec_fields(self, t: Tracked) -> dict[str, Any]:
        return {"maxEndpointsPerSlice": t.per_slice, "port": {"name": t.port_name}}

    def set_instances(self, t: Tracked, rng: random.Random) -> None:
        port = 8000 + t.index % 3
        pool = [f"10.70.{t.index % 250}.{n}" for n in range(1, 31)]
        t.instances = sorted((ip, port) for ip in rng.sample(pool, rng.randint(1, 12)))
        self.emulator.set_instances(t.eas, [{"ip": ip, "port": p} for ip, p in t.instances])

    def add(self, rng: random.Random) -> str:
        name, self.made = f"chaos-{self.made:03d}", self.made + 1
        eas = f"chaos_{self.made:03d}_{rng.randrange(16**6):06x}"
        t = Tracked(eas, self.made, instances=[], per_slice=rng.choice(SLICE_SIZES))
        self.set_instances(t, rng)
        # No drain and no shrink guard: what is published must equal the last answer.
        provider = pai_eas(self.emulator.url, t.eas)
        fields = {"drainSeconds": 0, "maxShrinkPercent": 100, **self.spec_fields(t)}
        body = directservice(NAMESPACE, name, provider, **fields)
        create(self.cp, body)
        self.live[name] = t
        return f"create {name}"

    def mutate(self, rng: random.Random) -> str:
        """One random change: an instance list, a spec, or a deletion with a creation."""
        name = rng.choice(sorted(self.live))
        t = self.live[name]
        kind = rng.choices(["instances", "spec", "delete"], weights=[5, 3, 2])[0]
        if kind == "instances":
            self.set_instances(t, rng)
        elif kind == "spec":
            t.per_slice = rng.choice([n for n in SLICE_SIZES if n != t.per_slice])
            t.port_name = rng.choice(PORT_NAMES)
            merge_patch(self.cp, dsvc_path(NAMESPACE, name), {"spec": self.spec_fields(t)})
        else:
            self.cp.request("DELETE", dsvc_path(NAMESPACE, name))
            del self.live[name]
            return f"delete {name}, {self.add(rng)}"
        return f"{kind} {name}"


def problems(world: World) -> list[str]:
    """Every way the cluster differs from what the live DirectServices should publish."""
    cp = world.cp
    dsvcs = {d["metadata"]["name"]: d for d in all_dsvcs(cp, NAMESPACE)}
    found = []
    if set(dsvcs) != set(world.live):
        found.append(f"DirectServices {sorted(set(dsvcs) ^ set(world.live))} linger or vanished")
    slices_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in listed(cp, f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"):
        slices_by[s["metadata"]["labels"].get(SERVICE_LABEL, "")].append(s)
    services = {
        s["metadata"]["name"] for s in listed(cp, f"/api/v1/namespaces/{NAMESPACE}/services")
    }
    if orphans := (set(slices_by) | services) - set(world.live):
        found.append(f"objects of no live DirectService: {sorted(orphans)}")
    for name, t in world.live.items():
        dsvc = dsvcs.get(name, {"metadata": {}})
        found += [f"{name}: {p}" for p in _mismatches(t, dsvc, slices_by.get(name, []))]
        if name not in services:
            found.append(f"{name}: no Service")
    return found


def _mismatches(t: Tracked, dsvc: dict[str, Any], mine: list[dict[str, Any]]) -> list[str]:
    """How one DirectService's slices and status differ from what it should publish."""
    out = []
    published = Counter(
        (address, s["ports"][0]["port"])
        for s in mine
        for endpoint in s["endpoints"] or []
        for address in endpoint["addresses"]
    )
    if published != Counter(t.instances):
        out.append(f"published {sorted(published.items())}, wants {t.instances}")
    for s in mine:
        owners = {o["uid"] for o in s["metadata"].get("ownerReferences") or []}
        if owners != {dsvc["metadata"].get("uid")}:
            out.append(f"slice {s['metadata']['name']} owned by {owners}")
        if len(s["endpoints"] or []) > t.per_slice or s["ports"][0]["name"] != t.port_name:
            out.append(f"slice {s['metadata']['name']} not reshaped to the spec")
    status = dsvc.get("status") or {}
    caught_up = (
        status.get("totalEndpoints") == len(t.instances)
        and status.get("observedGeneration") == dsvc["metadata"].get("generation")
        and condition(dsvc, "DiscoveryHealthy").get("status") == "True"
    )
    if not caught_up:
        out.append(f"status not caught up ({status.get('totalEndpoints')} endpoints)")
    return out


def wait_converged(world: World, timeout: float = 40.0) -> None:
    last: list[list[str]] = [[]]

    def probe() -> bool:
        last[0] = problems(world)
        return not last[0]

    try:
        eventually("convergence", probe, timeout, step=0.3)
    except AssertionError as err:
        raise AssertionError("\n".join([str(err), *last[0]])) from None


def wait_each(world: World, more: int) -> None:
    """Every live DirectService's discovery source answers `more` further requests."""
    start = {t.eas: emulator_requests(world.emulator, t.eas) for t in world.live.values()}
    wait_for_count(
        f"{more} more polls of each DirectService",
        lambda: min(emulator_requests(world.emulator, s) - n for s, n in start.items()),
        more,
        30,
        step=0.3,
    )


def assert_quiet_after_convergence(world: World, operator: OperatorProcess) -> None:
    """Once the converging poll is written (one more poll each), the next, identical poll of
    each writes nothing at all (its writes are done when the poll after it starts)."""
    wait_each(world, 1)
    before, writes = published_versions(world.cp, NAMESPACE), metric_total(operator, WRITES)
    polls = discovery_count(operator, "paiEas", "ok")
    wait_each(world, 1)
    assert discovery_count(operator, "paiEas", "ok") >= polls + len(world.live)
    assert metric_total(operator, WRITES) == writes
    assert published_versions(world.cp, NAMESPACE) == before
    assert metric_total(operator, INTERNAL_ERRORS) == 0


def live(operator: OperatorProcess) -> str:
    return f"http://127.0.0.1:{operator.liveness_port}/healthz"


def sigkill(operator: OperatorProcess) -> None:
    os.killpg(operator.pid, signal.SIGKILL)  # the whole group, as a container runtime would


@pytest.fixture(scope="module")
def chaos_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("chaos")) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc, tail=60) as started:
        yield started


def test_sigkill_at_random_points_converges_without_duplicates_or_orphans(
    own_cluster: ControlPlane, chaos_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    world = World(own_cluster, emulator)
    setup = random.Random(BASE_SEED - 1)
    for _ in range(LIVE):
        world.add(setup)
    wait_converged(world)
    for round_no in range(ROUNDS):
        seed = BASE_SEED + round_no
        rng = random.Random(seed)
        delay = rng.uniform(0.0, MAX_KILL_DELAY)
        killer = threading.Timer(delay, sigkill, args=(chaos_operator,))
        killer.start()  # the kill lands while the changes below are being reconciled
        busy = [world.mutate(rng) for _ in range(rng.randint(3, 6))]
        killer.join()
        eventually("the operator dead", lambda: not http_ok(live(chaos_operator)), 5)
        chaos_operator.stop()  # reaps it (SIGKILL left nothing to stop gracefully)
        down = [world.mutate(rng) for _ in range(rng.randint(1, 3))]
        print(f"round {round_no}: seed {seed}, SIGKILL after {delay:.2f}s")
        print(f"  while running: {busy}; while down: {down}")
        chaos_operator.start()
        wait_converged(world)
        assert_quiet_after_convergence(world, chaos_operator)
