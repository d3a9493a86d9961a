"""The operator survives its own restart cheaply: it adopts its slices and rewrites nothing."""

from __future__ import annotations

import time

import pytest

from clusterhelpers import apply, condition, eventually, get_json
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.e2e


def _versions(cp: ControlPlane, namespace: str) -> dict[str, str]:
    objs = get_json(cp, "dsvc,service,endpointslices,events", "-n", namespace)
    return {
        f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
        for o in objs["items"]
    }


def test_restart_adopts_slices_without_writes(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    # 250 instances at 100 per slice: three slices to adopt.
    instances = [{"ip": f"10.40.{i // 200}.{i % 200 + 1}", "port": 9000} for i in range(250)]
    emulator.set_instances("restart_svc", instances)
    dsvc = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": "restart", "namespace": namespace},
        "spec": {
            "provider": {"paiEas": {"endpoint": emulator.url, "serviceName": "restart_svc"}},
            "pollInterval": "1s",
        },
    }
    apply(control_plane, dsvc)

    def synced() -> bool:
        obj = get_json(control_plane, "dsvc", "restart", "-n", namespace)
        return (obj.get("status") or {}).get("totalEndpoints") == 250 and condition(
            obj, "DiscoveryHealthy"
        ).get("status") == "True"

    eventually("all 250 published", synced, 20)
    time.sleep(1.5)
    before = _versions(control_plane, namespace)
    assert sum(k.startswith("EndpointSlice/") for k in before) == 3

    operator.stop()
    operator.start()
    polls = emulator.requests("restart_svc")["total"]
    eventually(
        "polls after the restart",
        lambda: emulator.requests("restart_svc")["total"] >= polls + 3,
        20,
    )
    time.sleep(1.0)
    assert _versions(control_plane, namespace) == before
