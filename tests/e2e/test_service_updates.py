"""The Service follows what is published: a port that moves is replaced, never duplicated."""

from __future__ import annotations

import pytest

from clusterhelpers import apply, condition, eventually, get_json, slices_of
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.e2e


def test_shown_port_moves_with_the_instances(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    emulator.set_instances("moving_svc", [{"ip": "10.60.0.1", "port": 8000}])
    dsvc = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": "moving", "namespace": namespace},
        "spec": {
            "provider": {"paiEas": {"endpoint": emulator.url, "serviceName": "moving_svc"}},
            "pollInterval": "1s",
        },
    }
    apply(control_plane, dsvc)

    def service_ports() -> list[dict[str, object]]:
        svc = control_plane.kubectl("get", "service", "moving", "-n", namespace, check=False)
        if svc.returncode != 0:
            return []
        ports: list[dict[str, object]] = get_json(
            control_plane, "service", "moving", "-n", namespace
        )["spec"]["ports"]
        return ports

    eventually("the Service", lambda: [p["port"] for p in service_ports()] == [8000], 15)
    emulator.set_instances("moving_svc", [{"ip": "10.60.0.1", "port": 9000}])
    eventually("the moved port", lambda: [p["port"] for p in service_ports()] == [9000], 15)
    assert [s["ports"][0]["port"] for s in slices_of(control_plane, namespace, "moving")] == [9000]
    obj = get_json(control_plane, "dsvc", "moving", "-n", namespace)
    assert condition(obj, "DiscoveryHealthy")["status"] == "True"


def test_an_edit_to_the_port_name_applies_at_once(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    emulator.set_instances("renamed_svc", [{"ip": "10.61.0.1", "port": 8000}])
    dsvc = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": "renamed", "namespace": namespace},
        "spec": {
            "provider": {"paiEas": {"endpoint": emulator.url, "serviceName": "renamed_svc"}},
            "pollInterval": "1h",  # only the edit itself can trigger the next poll
        },
    }
    apply(control_plane, dsvc)
    eventually("slices", lambda: slices_of(control_plane, namespace, "renamed"), 15)
    dsvc["spec"]["port"] = {"name": "grpc"}
    apply(control_plane, dsvc)
    eventually(
        "the renamed port",
        lambda: (
            [s["ports"][0]["name"] for s in slices_of(control_plane, namespace, "renamed")]
            == ["grpc"]
        ),
        15,
    )
