"""What every scenario runs against: the control plane, the emulator process, the slice watch
and the operator process (restarted per scenario so its CPU and memory start clean)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes.client import ApiClient

from bench import procfs
from bench.cluster import SliceWatcher, request_snapshot
from bench.emulatorproc import EmulatorProcess
from bench.profiling import ProfiledOperator
from bench.stats import OPERATOR_RESOURCES, RequestKey, write_delta
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess

FLEET_NS = "bench"
LARGE_NS = "bench-large"


@dataclass(frozen=True)
class Settings:
    quick: bool
    scenarios: frozenset[str]
    duration: float  # steady-state window per fleet size, seconds
    fleet_size: int
    curve: tuple[int, ...]
    instances: int
    interval: float
    large_instances: int
    changes: int
    probe_interval: float
    profile_seconds: float
    http_rate: float
    http_seconds: float
    workdir: Path
    output: Path | None
    seed: int = 1
    health_services: int = 1000  # the health scenario's checked fleet
    health_kills: int = 50
    health_window: float = 60.0  # s, per window of the checked fleet
    handover_rounds: int = 20  # leader kills, and as many SIGTERMs
    coalesce_services: int = 1000  # DirectServices of the coalescing scenario
    coalesce_upstreams: int = 10  # the upstreams they share
    overload_services: int = 6000
    # At 6,000 x 5 s one replica still made every poll (docs/benchmarks.md): at 2.5 s the
    # same fleet is the poll load of 12,000 at 5 s, about twice what it carries.
    overload_interval: float = 2.5
    shard_services: int = 6000  # 3,000 a replica
    shard_replicas: int = 2
    shard_count: int = 4
    shard_upstreams: int = 16  # discovery hosts: a PAI-EAS shard is its host's hash


def fleet_dsvc(i: int) -> str:
    return f"fleet-{i:05d}"


def fleet_eas(i: int) -> str:
    return f"fleet_{i:05d}"


def fleet_instances(i: int, count: int) -> list[dict[str, Any]]:
    """10.x addresses unique per service (never contacted: the API server only stores them)."""
    return [
        {"ip": f"10.{(i >> 8) & 255}.{i & 255}.{j + 1}", "port": 8000, "weight": 100}
        for j in range(count)
    ]


@dataclass
class Snapshot:
    """CPU and memory of the interesting processes plus the API server's request counters."""

    operator: procfs.ProcSample
    apiserver: procfs.ProcSample
    etcd: procfs.ProcSample
    emulator: procfs.ProcSample
    bench: procfs.ProcSample
    machine: tuple[int, int]  # busy, total ticks of all cores
    requests: Counter[RequestKey]
    at: float = field(default_factory=time.time)


@dataclass
class Env:
    cp: ControlPlane
    api: ApiClient
    emulator: EmulatorProcess
    watcher: SliceWatcher
    workdir: Path
    operator: OperatorProcess | None = None
    _starts: int = 0

    @property
    def etcd_pid(self) -> int:
        return self.cp.pids[0]

    @property
    def apiserver_pid(self) -> int:
        return self.cp.pids[1]

    def start_operator(
        self, label: str, profile_dir: Path | None = None, extra_args: Sequence[str] = ()
    ) -> OperatorProcess:
        self.stop_operator()
        self._starts += 1
        log = self.workdir / f"operator-{self._starts:02d}-{label}.log"
        proc: OperatorProcess
        if profile_dir is None:
            proc = OperatorProcess(self.cp.kubeconfig, log, extra_args=extra_args)
        else:
            proc = ProfiledOperator(self.cp.kubeconfig, log, profile_dir)
        proc.start(timeout=120)
        self.operator = proc
        return proc

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None

    def requests(self) -> Counter[RequestKey]:
        return request_snapshot(self.cp)

    def operator_writes(self) -> int:
        return sum(write_delta(Counter(), self.requests(), OPERATOR_RESOURCES).values())

    def snapshot(self) -> Snapshot:
        assert self.operator is not None
        return Snapshot(
            operator=procfs.sample_tree(self.operator.pid),
            apiserver=procfs.sample(self.apiserver_pid),
            etcd=procfs.sample(self.etcd_pid),
            emulator=procfs.sample(self.emulator.pid),
            bench=procfs.sample(os.getpid()),
            machine=procfs.machine_ticks(),
            requests=self.requests(),
        )

    def wait_quiet(self, quiet: float, timeout: float) -> bool:
        """Until the operator's resources see no write for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = self.operator_writes()
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.operator_writes()
            if now == last:
                return True
            last = now
        return False

    def wait_polls(self, service: str, polls: int, timeout: float) -> bool:
        """Until the emulator has answered `service` `polls` more times."""
        start = self.emulator.polls_of(service)
        return wait_for(lambda: self.emulator.polls_of(service) >= start + polls, timeout, 0.2)


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
