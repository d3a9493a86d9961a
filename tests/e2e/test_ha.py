"""Three replicas, one Lease: exactly one polls and writes; a SIGKILLed leader is replaced
within a lease duration plus a poll interval, a SIGTERMed one within 2 s.

The replicas are real operator processes on a control plane of this module's own; which one
polls is read from the emulator's request log (each replica names itself in its User-Agent),
which one writes from each replica's write counter.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    addresses,
    apply,
    directservice,
    eventually,
    pai_eas,
    slices_of,
    wait_requests,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "ha"
LEASE = "directservice-operator-shard-0"
DURATION, DEADLINE, RETRY = 6.0, 4.0, 0.5  # s: short, so five rounds fit in the suite
INTERVAL = 3.0  # the DirectService's poll interval
TAKEOVER_BOUND = DURATION + INTERVAL  # SIGKILL -> the new leader's change is published
HANDOVER_BOUND = 2.0  # SIGTERM -> another replica holds the Lease
WRITES = "directservice_api_writes_total"
PUBLISHED = {("10.60.0.1", 8000)}  # what the module's DirectService serves, as it grows


def replica_args(identity: str) -> list[str]:
    timing = {"--lease-duration": DURATION, "--renew-deadline": DEADLINE, "--retry-period": RETRY}
    args = ["-n", NAMESPACE, "--leader-election", "--identity", identity]
    args += ["--lease-namespace", NAMESPACE]
    return args + [f"{flag}={value:g}s" for flag, value in timing.items()]


class Replicas:
    def __init__(self, cp: ControlPlane, tmp: Path) -> None:
        self.cp = cp
        self.procs = {
            name: OperatorProcess(cp.kubeconfig, tmp / f"{name}.log", extra_args=replica_args(name))
            for name in (f"replica-{i}" for i in range(3))
        }

    def holder(self) -> str:
        try:
            lease = self.cp.request(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
            )
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return ""
            raise
        return str(lease["spec"].get("holderIdentity") or "")

    def leader(self) -> str:
        return eventually("a Lease holder", lambda: self.holder() or None, 30)

    def ensure_all_running(self) -> None:
        for proc in self.procs.values():
            if proc._proc is None:
                proc.start()

    def writes(self, name: str) -> int:
        """What a replica wrote, Leases aside (those are the election itself)."""
        total = 0
        for line in self.procs[name].metrics_text().splitlines():
            if line.startswith(WRITES + "{") and 'kind="Lease"' not in line:
                total += int(float(line.rsplit(" ", 1)[1]))
        return total


@pytest.fixture(scope="module")
def replicas(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    group = Replicas(own_cluster, tmp_path_factory.mktemp("ha"))
    group.ensure_all_running()
    try:
        yield group
    finally:
        for proc in group.procs.values():
            print(proc.tail(60))
            proc.stop()


@pytest.fixture(scope="module")
def service(replicas: Replicas, emulator: EmulatorThread) -> str:
    eas = f"ha_{secrets.token_hex(4)}"
    PUBLISHED.clear()
    PUBLISHED.add(("10.60.0.1", 8000))
    emulator.set_instances(eas, [{"ip": "10.60.0.1", "port": 8000}])
    dsvc = directservice(NAMESPACE, "ha", pai_eas(emulator.url, eas))
    dsvc["spec"]["pollInterval"] = f"{INTERVAL:g}s"
    apply(replicas.cp, dsvc)
    wait_published(replicas.cp, {("10.60.0.1", 8000)}, 30)
    return eas


def wait_published(cp: ControlPlane, expected: set[tuple[str, int]], timeout: float) -> float:
    """Wait until the slices hold exactly `expected`; return when that was first seen."""
    eventually(
        f"slices with {sorted(expected)}",
        lambda: addresses(slices_of(cp, NAMESPACE, "ha")) == expected or None,
        timeout,
        step=0.05,
    )
    return time.monotonic()


def grow(emulator: EmulatorThread, eas: str, address: tuple[str, int]) -> set[tuple[str, int]]:
    """Add one instance (a change the shrink guard lets through at once); the new set."""
    PUBLISHED.add(address)
    emulator.set_instances(eas, [{"ip": ip, "port": port} for ip, port in sorted(PUBLISHED)])
    return set(PUBLISHED)


def callers(emulator: EmulatorThread, eas: str) -> set[str]:
    agents = {r["headers"].get("User-Agent", "") for r in emulator.requests(eas)["log"]}
    return {a.rsplit("(", 1)[-1].rstrip(")") for a in agents}


def test_exactly_one_replica_polls_and_writes(
    replicas: Replicas, service: str, emulator: EmulatorThread
) -> None:
    replicas.ensure_all_running()
    leader = replicas.leader()
    before = {name: replicas.writes(name) for name in replicas.procs}
    wait_published(replicas.cp, grow(emulator, service, ("10.60.0.2", 8000)), 30)
    wait_requests(emulator, service, 2)
    after = {name: replicas.writes(name) for name in replicas.procs}
    assert after[leader] > before[leader], "the leader wrote the change"
    for name in set(replicas.procs) - {leader}:
        assert after[name] == 0, f"standby {name} wrote {after[name]} times"
    recent = emulator.requests(service)["log"][-2:]
    assert {r["headers"]["User-Agent"].endswith(f"({leader})") for r in recent} == {True}
    assert callers(emulator, service) <= set(replicas.procs)


@pytest.mark.parametrize("round_no", range(5))
def test_a_sigkilled_leader_is_replaced_within_a_lease_duration_and_a_poll(
    replicas: Replicas, service: str, emulator: EmulatorThread, round_no: int
) -> None:
    replicas.ensure_all_running()
    leader = replicas.leader()
    proc = replicas.procs[leader]
    address = (f"10.60.1.{round_no + 1}", 8000)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group, as a container runtime would
    killed = time.monotonic()
    seen = wait_published(replicas.cp, grow(emulator, service, address), TAKEOVER_BOUND + 20)
    proc.stop()  # reaps it
    successor = replicas.holder()
    print(f"round {round_no}: {leader} killed, {successor} published after {seen - killed:.2f}s")
    assert successor not in ("", leader)
    assert seen - killed <= TAKEOVER_BOUND


@pytest.mark.parametrize("round_no", range(5))
def test_a_sigtermed_leader_hands_over_within_two_seconds(
    replicas: Replicas, service: str, emulator: EmulatorThread, round_no: int
) -> None:
    replicas.ensure_all_running()
    leader = replicas.leader()
    proc = replicas.procs[leader]
    os.kill(proc.pid, signal.SIGTERM)
    sent = time.monotonic()
    successor = eventually(
        "another Lease holder",
        lambda: h if (h := replicas.holder()) not in ("", leader) else None,
        HANDOVER_BOUND + 20,
        step=0.02,
    )
    handed_over = time.monotonic() - sent
    proc.stop()
    address = (f"10.60.2.{round_no + 1}", 8000)
    wait_published(replicas.cp, grow(emulator, service, address), INTERVAL + 10)
    print(f"round {round_no}: {leader} -> {successor} in {handed_over:.2f}s")
    assert handed_over <= HANDOVER_BOUND
