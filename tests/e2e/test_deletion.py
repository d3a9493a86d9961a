"""Deletion always finishes: of a DirectService whose discovery fails, of one deleted as it
is created, and of its namespace.

The control plane here (like every devenv ControlPlane) runs no kube-controller-manager, so
no namespace controller and no garbage collector: deleting a namespace only marks it
Terminating, and nothing deletes what is in it. The namespace test plays that controller's
part for the DirectServices alone (as it would, it deletes them), checks that the operator
removes its own Service, slices and finalizer inside the terminating namespace, and only
then finalizes the namespace (the controller's job, not the operator's).

The operator is cluster-wide (the chart's default) on a control plane of this module's own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from faultkit import dsvc_path, listed, log_offset, log_since, missing
from support import (
    clear_faults_of,
    create,
    directservice,
    emulator_requests,
    eventually,
    pai_eas,
    running,
    service,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def clusterwide_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("deletion")) / "operator.log"
    with running(OperatorProcess(own_cluster.kubeconfig, log), tail=80) as started:
        yield started


def new_namespace(cp: ControlPlane) -> str:
    name = f"del-{secrets.token_hex(3)}"
    cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def published(cp: ControlPlane, emulator: EmulatorThread, namespace: str, **spec: Any) -> str:
    """A DirectService serving two endpoints, published; its name is its EAS service's too."""
    name = f"gone-{secrets.token_hex(3)}"
    emulator.set_instances(name, [{"ip": "10.64.0.1", "port": 80}, {"ip": "10.64.0.2", "port": 80}])
    create(cp, directservice(namespace, name, pai_eas(emulator.url, name), **spec))
    wait_published(cp, namespace, name, {("10.64.0.1", 80), ("10.64.0.2", 80)})
    return name


def nothing_left(cp: ControlPlane, namespace: str, name: str) -> Callable[[], bool]:
    """True once the DirectService is gone (finalizer removed) with its Service and slices."""
    return lambda: (
        missing(cp, dsvc_path(namespace, name))
        and service(cp, namespace, name) is None
        and not slices(cp, namespace, name)
    )


@pytest.mark.parametrize("failing", ["answering-503", "poll-in-flight"])
def test_deleting_a_directservice_whose_discovery_fails_cleans_up(
    own_cluster: ControlPlane,
    clusterwide_operator: OperatorProcess,
    emulator: EmulatorThread,
    failing: str,
) -> None:
    cp, namespace = own_cluster, new_namespace(own_cluster)
    # read 8 s: a trickled answer holds a poll for connect + 2 x read = 17 s.
    name = published(cp, emulator, namespace, timeouts={"connect": "1s", "read": "8s"})
    if failing == "answering-503":
        emulator.add_fault("status", service=name, status=503)
        wait_health(cp, namespace, name, "False", "ServerError")
    else:
        emulator.add_fault("trickle", service=name, count=1)
        eventually("the trickled poll under way", lambda: not _faults_of(emulator, name), 10)
    cp.request("DELETE", dsvc_path(namespace, name))
    # The deletion waits out a poll in flight for 3 s at most, then cancels it.
    eventually("the DirectService and all it made gone", nothing_left(cp, namespace, name), 10)
    if failing == "poll-in-flight":
        # The cancelled poll's connection is gone: the emulator logs it on its next write.
        wait_for_count("the cut-off poll logged", lambda: _trickled(emulator, name), 1, 10)
    assert nothing_left(cp, namespace, name)()  # the cancelled poll wrote nothing after
    clear_faults_of(emulator, name)


def test_directservices_deleted_as_they_are_created_leave_nothing_behind(
    own_cluster: ControlPlane, clusterwide_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    """Deleted before kopf has added the finalizer, a DirectService is gone at once and no
    deletion handler runs: its poll loop must not publish (nor keep polling) for it."""
    cp, namespace = own_cluster, new_namespace(own_cluster)
    reference = published(cp, emulator, namespace)  # a live one, to count polls by
    names = [f"blink-{secrets.token_hex(3)}" for _ in range(5)]
    for name in names:
        emulator.set_instances(name, [{"ip": "10.64.2.1", "port": 80}])
        create(cp, directservice(namespace, name, pai_eas(emulator.url, name)))
        cp.request("DELETE", dsvc_path(namespace, name))
    eventually(
        "all five gone", lambda: all(missing(cp, dsvc_path(namespace, n)) for n in names), 10
    )
    wait_requests(emulator, reference, 3)  # every loop's start jitter (under 1 s) is over
    polled = {name: emulator_requests(emulator, name) for name in names}
    wait_requests(emulator, reference, 2)
    left = [n for n in names if service(cp, namespace, n) or slices(cp, namespace, n)]
    assert not left, f"Service and slices left behind by {left}; polls: {polled}"
    assert {name: emulator_requests(emulator, name) for name in names} == polled


def _faults_of(emulator: EmulatorThread, service_name: str) -> list[dict[str, Any]]:
    return [f for f in emulator.faults() if f.get("service") == service_name]


def _trickled(emulator: EmulatorThread, service_name: str) -> int:
    return sum(e["fault"] == "trickle" for e in emulator.requests(service_name)["log"])


def test_a_namespace_marked_for_deletion_is_cleaned_of_what_the_operator_made(
    own_cluster: ControlPlane, clusterwide_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    cp, namespace = own_cluster, new_namespace(own_cluster)
    healthy = published(cp, emulator, namespace)
    broken = published(cp, emulator, namespace)
    emulator.add_fault("status", service=broken, status=503)
    wait_health(cp, namespace, broken, "False", "ServerError")

    offset = log_offset(clusterwide_operator)
    cp.request("DELETE", f"/api/v1/namespaces/{namespace}")
    phase = cp.request("GET", f"/api/v1/namespaces/{namespace}")["status"]["phase"]
    assert phase == "Terminating"
    # No namespace controller here: nothing deletes the contents (a poll of each later, they
    # are still not marked for deletion). Do the controller's part for our kind.
    wait_requests(emulator, healthy, 1)
    assert not any(d["metadata"].get("deletionTimestamp") for d in listed(cp, dsvc_path(namespace)))
    cp.request("DELETE", dsvc_path(namespace))
    for name in (healthy, broken):
        eventually(f"{name} cleaned up by the operator", nothing_left(cp, namespace, name), 20)
    # The namespace controller's last step, which is not the operator's: the namespace goes.
    body = cp.request("GET", f"/api/v1/namespaces/{namespace}")
    body["spec"]["finalizers"] = []
    cp.request("PUT", f"/api/v1/namespaces/{namespace}/finalize", body)
    eventually("the namespace gone", lambda: missing(cp, f"/api/v1/namespaces/{namespace}"), 10)
    clear_faults_of(emulator, broken)
    log = log_since(clusterwide_operator, offset)
    assert "Traceback" not in log and "Will retry" not in log
