"""Fixtures for the end-to-end tier: the emulator and the operator as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.netlab import InstanceServer, NetLab
from devenv.operatorproc import OperatorProcess
from devenv.tools import Tools
from directservice.emulator.runner import EmulatorThread
from support import running
from traffic import MODEL, PORT, TTL


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The session's operator, cluster-wide. No test stops or restarts it: a test that needs
    to, or that needs other flags, runs an OperatorProcess of its own (test_restart.py)."""
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    with running(OperatorProcess(control_plane.kubeconfig, log)) as proc:
        yield proc


# -- the traffic tests (test_traffic.py, test_draining.py): one module's own cluster ------


@pytest.fixture(scope="module")
def traffic_dns(own_cluster: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    """CoreDNS on the module's own cluster, with a short TTL (it is part of the bounds)."""
    with CoreDNS(own_cluster, binary=tools.coredns, ttl=TTL) as server:
        yield server


@pytest.fixture(scope="module")
def traffic_operator(
    request: pytest.FixtureRequest,
    own_cluster: ControlPlane,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """An operator for the module's NAMESPACE alone, which the module may restart."""
    namespace = request.module.NAMESPACE
    log = Path(tmp_path_factory.mktemp(namespace)) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", namespace])
    with running(proc):
        yield proc


@pytest.fixture
def instances(netlab: NetLab) -> Iterator[list[InstanceServer]]:
    """Three model instances, one per lab host, each answering with its own identity."""
    hosts = [netlab.add_host() for _ in range(3)]
    yield [host.serve(MODEL, PORT, identity=f"{MODEL}-{n}") for n, host in enumerate(hosts)]
    for host in hosts:
        netlab.remove_host(host)
