"""DirectService → PAI-EAS discovery (emulator) → Service + EndpointSlices → CoreDNS answers.

Everything here is real: kube-apiserver + etcd, CoreDNS with the kubernetes plugin, the
operator as its own process and the emulator over HTTP on loopback. Instance addresses
are 10.x test addresses (the API server rejects loopback); no traffic is sent to them.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    HEALTHY,
    apply,
    clear_faults_of,
    condition,
    events_for,
    eventually,
    example_dsvc,
    get_json,
    resource_versions,
    slices_of,
    wait_health,
    wait_requests,
)

pytestmark = pytest.mark.e2e

DNS_TTL = 5.0
FAILING_POLLS = 3  # polls that must fail without a write before the fault is lifted
_names = itertools.count()


def _instances(*specs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"ip": ip, "port": port, "weight": 100} for ip, port in specs]


def _publish(
    cp: ControlPlane,
    emulator: EmulatorThread,
    namespace: str,
    *instances: tuple[str, int],
    poll: str = "1s",
    read_timeout: str = "5s",
) -> tuple[str, str]:
    """Serve `instances` under a new PAI-EAS service and apply the example DirectService
    polling it; returns (DirectService name, PAI-EAS service name)."""
    dsvc, eas = example_dsvc(emulator.url, namespace, poll=poll, read_timeout=read_timeout)
    emulator.set_instances(eas, _instances(*instances))
    apply(cp, dsvc)
    return dsvc["metadata"]["name"], eas


def _fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def test_example_resolves_to_emulator_instances(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    want = {"10.20.0.1", "10.20.0.2", "10.20.0.3"}
    name, _ = _publish(
        control_plane, emulator, namespace, *((ip, 50000) for ip in sorted(want)), poll="5s"
    )

    # Within one poll interval (5 s) plus start-up slack.
    fqdn = _fqdn(name, namespace)
    eventually("A records", lambda: a_records(coredns.address, fqdn) == want, 15)
    srv = srv_records(coredns.address, f"_http._tcp.{fqdn}")
    assert srv == {(ip, 50000) for ip in want}

    service = get_json(control_plane, "service", name, "-n", namespace)
    assert service["spec"]["clusterIP"] == "None"
    assert "selector" not in service["spec"]
    assert service["spec"]["ports"][0]["name"] == "http"
    slices = slices_of(control_plane, namespace, name)
    assert [s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in slices] == [
        "directservice.io"
    ]
    assert slices[0]["ports"] == [
        {"name": "http", "port": 50000, "protocol": "TCP", "appProtocol": "http"}
    ]
    status = wait_health(control_plane, namespace, name, "True", timeout=10)
    assert status["status"]["readyEndpoints"] == 3
    assert status["status"]["totalEndpoints"] == 3
    assert status["status"]["observedGeneration"] == status["metadata"]["generation"]


def test_changes_reach_dns_within_interval_plus_ttl(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    name, eas = _publish(
        control_plane, emulator, namespace, ("10.21.0.1", 8000), ("10.21.0.2", 8000), poll="2s"
    )
    fqdn = _fqdn(name, namespace)
    eventually(
        "first answer", lambda: a_records(coredns.address, fqdn) == {"10.21.0.1", "10.21.0.2"}, 15
    )

    emulator.set_instances(eas, _instances(("10.21.0.2", 8000), ("10.21.0.9", 8000)))
    # The bound under test: one poll interval (2 s) plus the DNS TTL, plus 3 s of slack.
    eventually(
        "changed answer",
        lambda: a_records(coredns.address, fqdn) == {"10.21.0.2", "10.21.0.9"},
        2 + DNS_TTL + 3,
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"mode": "status", "status": 500}, "ServerError"),
        ({"mode": "delay", "seconds": 3.0}, "Timeout"),
        ({"mode": "garbage"}, "InvalidJSON"),
        ({"mode": "empty"}, "EmptyList"),
    ],
    ids=["http-500", "timeout", "garbage", "empty-list"],
)
def test_bad_answers_keep_published_slices(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
    fault: dict[str, Any],
    reason: str,
) -> None:
    name, eas = _publish(
        control_plane,
        emulator,
        namespace,
        ("10.22.0.1", 9000),
        ("10.22.0.2", 9000),
        read_timeout="1s",
    )
    fqdn = _fqdn(name, namespace)
    wait_health(control_plane, namespace, name, "True", timeout=15)
    before = slices_of(control_plane, namespace, name)
    service_before = get_json(control_plane, "service", name, "-n", namespace)

    params = dict(fault)
    emulator.add_fault(params.pop("mode"), service=eas, **params)
    try:
        cond = condition(wait_health(control_plane, namespace, name, "False", timeout=15), HEALTHY)
        assert cond["reason"] == reason
        assert cond["message"]
        # Several more failing polls, counted by the emulator, write nothing at all.
        wait_requests(emulator, eas, FAILING_POLLS)
        assert slices_of(control_plane, namespace, name) == before  # byte-for-byte
        assert get_json(control_plane, "service", name, "-n", namespace) == service_before
        assert a_records(coredns.address, fqdn) == {"10.22.0.1", "10.22.0.2"}
        warnings = [e for e in events_for(control_plane, namespace, name) if e["reason"] == reason]
        assert len(warnings) == 1, "an Event on the transition only"
    finally:
        clear_faults_of(emulator, eas)
    wait_health(control_plane, namespace, name, "True", timeout=30)


def test_instances_on_two_ports_get_two_slices_and_srv_ports(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    want = {("10.23.0.1", 50000), ("10.23.0.2", 50001)}
    name, _ = _publish(control_plane, emulator, namespace, *sorted(want), poll="2s")
    srv_name = f"_http._tcp.{_fqdn(name, namespace)}"
    eventually("SRV answers", lambda: srv_records(coredns.address, srv_name) == want, 15)
    slices = slices_of(control_plane, namespace, name)
    assert sorted(s["ports"][0]["port"] for s in slices) == [50000, 50001]
    assert all(len(s["endpoints"]) == 1 for s in slices)


def test_steady_state_writes_nothing(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    name, eas = _publish(
        control_plane, emulator, namespace, ("10.24.0.1", 7000), ("10.24.0.2", 7000)
    )
    wait_health(control_plane, namespace, name, "True", timeout=15)
    # Two more polls: whatever the polls before them had to write (slices, status, the
    # first Event) is written by then.
    wait_requests(emulator, eas, 2)

    before = resource_versions(control_plane, namespace)
    assert any(key.startswith("EndpointSlice/") for key in before)
    wait_requests(emulator, eas, 3)  # the operator keeps polling the same answer ...
    assert resource_versions(control_plane, namespace) == before  # ... and writes nothing


def test_deleting_the_directservice_removes_service_and_slices(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    name, _ = _publish(control_plane, emulator, namespace, ("10.25.0.1", 7000))
    eventually("slices", lambda: slices_of(control_plane, namespace, name), 15)

    control_plane.kubectl("delete", "dsvc", name, "-n", namespace, "--wait=true")
    assert slices_of(control_plane, namespace, name) == []
    gone = control_plane.kubectl("get", "service", name, "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
