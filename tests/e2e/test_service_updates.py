"""The Service follows what is published: a port that moves is replaced, never duplicated."""

from __future__ import annotations

import secrets

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import apply, directservice, eventually, health, pai_eas, service, slices_of

pytestmark = pytest.mark.e2e


def _service_ports(cp: ControlPlane, namespace: str, name: str) -> list[int]:
    svc = service(cp, namespace, name)
    return [p["port"] for p in svc["spec"]["ports"]] if svc else []


def test_shown_port_moves_with_the_instances(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    eas = f"moving_{secrets.token_hex(4)}"
    emulator.set_instances(eas, [{"ip": "10.60.0.1", "port": 8000}])
    apply(control_plane, directservice(namespace, "moving", pai_eas(emulator.url, eas)))

    def ports() -> list[int]:
        return _service_ports(control_plane, namespace, "moving")

    eventually("the Service", lambda: ports() == [8000], 15)
    emulator.set_instances(eas, [{"ip": "10.60.0.1", "port": 9000}])
    eventually("the moved port", lambda: ports() == [9000], 15)
    assert [s["ports"][0]["port"] for s in slices_of(control_plane, namespace, "moving")] == [9000]
    assert health(control_plane, namespace, "moving")["status"] == "True"


def test_an_edit_to_the_port_name_applies_at_once(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    eas = f"renamed_{secrets.token_hex(4)}"
    emulator.set_instances(eas, [{"ip": "10.61.0.1", "port": 8000}])
    # pollInterval 1h: only the edit itself can trigger the next poll.
    dsvc = directservice(namespace, "renamed", pai_eas(emulator.url, eas), pollInterval="1h")
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
