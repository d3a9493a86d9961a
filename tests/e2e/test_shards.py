"""Two replicas, 4 shards, 40 DirectServices: each DirectService is polled by exactly one
replica at a time; a killed replica's shards move and every DirectService keeps being
polled; no slice write is doubled or lost across the move; a 20/min budget shared by five
DirectServices never sees more than 20 calls in any 60 s window, across the move too.

Who polled comes from this module's own emulator's request log (each replica names itself
in its User-Agent), who wrote from each replica's write counter.
"""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    PROJECT,
    addresses,
    apply,
    create,
    directservice,
    eventually,
    get_dsvc,
    iam_user,
    model_arts,
    secret,
    slices_of,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "shards"
SHARDS = 4
SERVICES = 40
SHARED = 5  # DirectServices on one credential with a 20/min budget
PER_MINUTE = 20
DURATION, DEADLINE, RETRY = 6.0, 4.0, 0.5
SLICE_WRITES = 'directservice_api_writes_total{kind="EndpointSlice"'


def args(identity: str) -> list[str]:
    return [
        "-n", NAMESPACE, "--leader-election", "--identity", identity,
        "--lease-namespace", NAMESPACE, f"--shards={SHARDS}", f"--lease-duration={DURATION:g}s",
        f"--renew-deadline={DEADLINE:g}s", f"--retry-period={RETRY:g}s",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    """Its own: the test reads the whole request log of a minute and more."""
    with EmulatorThread(log_size=100_000) as emu:
        yield emu


@pytest.fixture(scope="module")
def replicas(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, OperatorProcess]]:
    tmp = tmp_path_factory.mktemp("shards")
    procs = {
        name: OperatorProcess(own_cluster.kubeconfig, tmp / f"{name}.log", extra_args=args(name))
        for name in ("alpha", "beta")
    }
    for proc in procs.values():
        proc.start()
    try:
        yield procs
    finally:
        for proc in procs.values():
            print(proc.tail(60))
            proc.stop()


def caller(record: dict[str, Any]) -> str:
    return str(record["headers"].get("User-Agent", "")).rsplit("(", 1)[-1].rstrip(")")


def log_since(emulator: EmulatorThread, since: float) -> list[dict[str, Any]]:
    return [r for r in emulator.requests()["log"] if r["time"] >= since]


def slice_writes(proc: OperatorProcess) -> int:
    lines = proc.metrics_text().splitlines()
    return sum(
        int(float(line.rsplit(" ", 1)[1])) for line in lines if line.startswith(SLICE_WRITES)
    )


def answer(i: int, generation: int) -> set[tuple[str, int]]:
    """Service i's instances at a generation: each adds one (the shrink guard holds
    replacements back, and this test is about who writes, not about the guard)."""
    return {(f"10.70.{g}.{i + 1}", 8000) for g in range(generation + 1)}


def publish_all(emulator: EmulatorThread, ids: list[str], generation: int) -> None:
    for i, sid in enumerate(ids):
        instances = [{"ip": ip, "port": port} for ip, port in sorted(answer(i, generation))]
        emulator.set_instances(sid, instances)


def wait_all_published(cp: ControlPlane, generation: int, timeout: float) -> None:
    def done() -> bool:
        return all(
            addresses(slices_of(cp, NAMESPACE, f"svc-{i:02d}")) == answer(i, generation)
            for i in range(SERVICES)
        )

    eventually(f"all {SERVICES} DirectServices at generation {generation}", done, timeout)


def shard_in_status(cp: ControlPlane, i: int) -> int | None:
    shard = (get_dsvc(cp, NAMESPACE, f"svc-{i:02d}").get("status") or {}).get("shard")
    return shard if isinstance(shard, int) else None


def polled_by(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    by_service: dict[str, set[str]] = {}
    for r in records:
        by_service.setdefault(r["service"], set()).add(caller(r))
    return by_service


def assert_budget_kept(emulator: EmulatorThread, shared: list[str], started: float) -> None:
    """More calls than a minute's budget (so the history spans over a minute), and never more
    than the budget in any 60 s window."""

    def shared_calls() -> list[float]:
        records = log_since(emulator, started)
        return sorted(r["time"] for r in records if r["service"] in shared)

    # More calls than a minute's budget: the history spans more than a minute.
    calls = eventually(
        f"over {PER_MINUTE + 1} calls on the shared budget",
        lambda: found if len(found := shared_calls()) > PER_MINUTE + 1 else None,
        120,
    )
    assert calls[-1] - calls[0] > 60
    worst = max(sum(t <= c < t + 60 for c in calls) for t in calls)
    assert worst <= PER_MINUTE, f"{worst} calls in one 60 s window"


def test_shards_split_the_work_move_on_a_kill_and_keep_the_budget(
    own_cluster: ControlPlane, replicas: dict[str, OperatorProcess], emulator: EmulatorThread
) -> None:
    cp = own_cluster
    started = time.time()
    user, password = iam_user(emulator, "shards")
    ids = [f"shard-{secrets.token_hex(3)}-{i:02d}" for i in range(SERVICES)]
    publish_all(emulator, ids, 0)
    shared_token = emulator.login(user, password, "acme", PROJECT)
    create(cp, secret(NAMESPACE, "shared", {"token": shared_token}))
    for i, sid in enumerate(ids):
        if i < SHARED:  # one Secret, one credential, one 20/min budget
            provider = model_arts(emulator, sid, "shared", token_key="token")
            extra: dict[str, Any] = {"rateBudget": {"callsPerMinute": PER_MINUTE}}
        else:  # a credential each: 35 shard keys spread over the shards
            token = emulator.login(user, password, "acme", PROJECT)
            create(cp, secret(NAMESPACE, f"cred-{i:02d}", {"token": token}))
            provider = model_arts(emulator, sid, f"cred-{i:02d}", token_key="token")
            extra = {}
        apply(cp, directservice(NAMESPACE, f"svc-{i:02d}", provider, **extra))
    wait_all_published(cp, 0, 60)
    shards = eventually(
        "status.shard on every DirectService",
        lambda: (
            found
            if None not in (found := [shard_in_status(cp, i) for i in range(SERVICES)])
            else None
        ),
        30,
    )
    assert set(shards) <= set(range(SHARDS)) and len(set(shards)) > 1, shards
    assert len({shards[i] for i in range(SHARED)}) == 1, "one Secret, one shard"

    # Each DirectService is polled by exactly one replica, and both replicas have work.
    window = time.time()
    eventually(
        "every DirectService polled twice more",
        lambda: all(
            sum(r["service"] == sid for r in log_since(emulator, window)) >= 2 for sid in ids
        ),
        60,
    )
    by_service = polled_by(log_since(emulator, window))
    assert all(len(who) == 1 for who in by_service.values()), by_service
    owners = {next(iter(who)) for who in by_service.values()}
    assert owners == set(replicas), f"both replicas serve some shards: {owners}"
    assert len({next(iter(by_service[sid])) for sid in ids[:SHARED]}) == 1, (
        "one budget, one replica"
    )

    # Kill the replica that serves the shared budget; change every answer while it is dead.
    victim = next(iter(by_service[ids[0]]))
    survivor = next(name for name in replicas if name != victim)
    before = slice_writes(replicas[survivor])
    os.killpg(replicas[victim].pid, signal.SIGKILL)
    killed = time.time()
    replicas[victim].stop()  # reaps it
    publish_all(emulator, ids, 1)
    wait_all_published(cp, 1, DURATION + 30)
    # One slice write per DirectService, all by the survivor: none doubled, none lost.
    assert slice_writes(replicas[survivor]) - before == SERVICES

    after = time.time()
    eventually(
        "every DirectService polled by the survivor",
        lambda: set(polled_by(log_since(emulator, after))) >= set(ids),
        60,
    )
    assert {caller(r) for r in log_since(emulator, after)} == {survivor}

    # At most one replica at a time: per DirectService, its callers form at most two runs
    # (before and after the move), never interleaved.
    for sid in ids:
        sequence = [caller(r) for r in log_since(emulator, started) if r["service"] == sid]
        runs = [name for name, _ in itertools.groupby(sequence)]
        assert len(runs) <= 2 and len(set(runs)) == len(runs), (sid, runs)
        if len(runs) == 2:
            last_victim = max(
                r["time"] for r in log_since(emulator, started)
                if r["service"] == sid and caller(r) == victim
            )  # fmt: skip
            assert last_victim <= killed

    # The shared budget: never more than 20 calls in any 60 s window, across the move too.
    assert_budget_kept(emulator, ids[:SHARED], started)
