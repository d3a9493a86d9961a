"""Active/standby replicas with kopf peering: one replica polls, the other takes over."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterhelpers import REPO, eventually
from directservice.devenv.controlplane import ControlPlane
from directservice.devenv.operatorproc import OperatorProcess
from directservice.devenv.tools import Tools
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.e2e

PEERING_CRDS = REPO / "charts" / "directservice-operator" / "crds" / "kopf.dev_peerings.yaml"


@pytest.fixture
def cluster(tools: Tools) -> Iterator[ControlPlane]:
    """A control plane of its own, so the session operator does not take part."""
    with ControlPlane(tools) as cp:
        cp.kubectl("apply", "-f", str(PEERING_CRDS))
        cp.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
        peering = {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "directservice-operator"},
        }
        cp.kubectl("apply", "-f", "-", input=json.dumps(peering))
        yield cp


def _rate(emulator: EmulatorThread, service: str, seconds: float) -> float:
    start = emulator.requests(service)["total"]
    time.sleep(seconds)
    return (emulator.requests(service)["total"] - start) / seconds


def test_one_replica_polls_and_the_other_takes_over(
    cluster: ControlPlane, emulator: EmulatorThread, tmp_path: Path
) -> None:
    emulator.set_instances("ha_svc", [{"ip": "10.50.0.1", "port": 8000}])
    args = ["--peering", "directservice-operator"]
    first = OperatorProcess(cluster.kubeconfig, tmp_path / "a.log", args).start()
    second = OperatorProcess(cluster.kubeconfig, tmp_path / "b.log", args).start()

    def standby() -> list[OperatorProcess]:
        return [p for p in (first, second) if "Pausing operations in favour" in p.tail(400)]

    try:
        # Peers find each other through keep-alives on the peering object; on a loaded
        # machine that takes a few seconds.
        eventually("one replica to stand by", lambda: len(standby()) == 1, 60)
        dsvc = {
            "apiVersion": "directservice.io/v1alpha1",
            "kind": "DirectService",
            "metadata": {"name": "ha", "namespace": "default"},
            "spec": {
                "provider": {"paiEas": {"endpoint": emulator.url, "serviceName": "ha_svc"}},
                "pollInterval": "1s",
            },
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(dsvc))
        eventually("first polls", lambda: emulator.requests("ha_svc")["total"] >= 2, 30)
        # One poller at 1 s gives about one request a second; two would give two.
        assert _rate(emulator, "ha_svc", 6) < 1.5

        paused = standby()
        assert len(paused) == 1, "exactly one replica stands by"
        active = second if paused[0] is first else first
        active.stop()
        eventually(
            "the standby takes over",
            lambda: _rate(emulator, "ha_svc", 2) > 0.5,
            90,
        )
    finally:
        print(first.tail(60), second.tail(60))  # shown by pytest when the test fails
        first.stop()
        second.stop()
