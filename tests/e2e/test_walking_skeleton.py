"""DirectService → PAI-EAS discovery (emulator) → Service + EndpointSlices → CoreDNS answers.

Everything here is real: kube-apiserver + etcd, CoreDNS with the kubernetes plugin, the
operator as its own process and the emulator over HTTP on loopback. Instance addresses
are 10.x test addresses (the API server rejects loopback); no traffic is sent to them.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

from clusterhelpers import (
    apply,
    condition,
    events_for,
    eventually,
    example,
    get_json,
    slices_of,
)
from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.e2e

DNS_TTL = 5.0
_names = itertools.count()


def _instances(*specs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"ip": ip, "port": port, "weight": 100} for ip, port in specs]


def _dsvc_from_example(
    emulator: EmulatorThread, namespace: str, poll: str = "5s", read_timeout: str = "5s"
) -> tuple[dict[str, Any], str]:
    """examples/01-pai-eas.yaml, pointed at the emulator with a service of its own."""
    obj = example("01-pai-eas.yaml")
    eas_service = f"mnist_saved_model_{next(_names)}"
    obj["metadata"]["namespace"] = namespace
    obj["spec"]["provider"]["paiEas"]["endpoint"] = emulator.url
    obj["spec"]["provider"]["paiEas"]["serviceName"] = eas_service
    obj["spec"]["pollInterval"] = poll
    obj["spec"]["timeouts"] = {"connect": "1s", "read": read_timeout}
    return obj, eas_service


def _dns(coredns: CoreDNS) -> tuple[str, int]:
    return ("127.0.0.1", coredns.port)


def _fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


def _healthy(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    dsvc = get_json(cp, "dsvc", name, "-n", namespace)
    ok = condition(dsvc, "DiscoveryHealthy").get("status") == "True"
    return dsvc if ok else None


def test_example_resolves_to_emulator_instances(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    dsvc, eas = _dsvc_from_example(emulator, namespace)
    emulator.set_instances(
        eas, _instances(("10.20.0.1", 50000), ("10.20.0.2", 50000), ("10.20.0.3", 50000))
    )
    apply(control_plane, dsvc)
    name = dsvc["metadata"]["name"]
    want = {"10.20.0.1", "10.20.0.2", "10.20.0.3"}

    # Within one poll interval (5 s) plus start-up slack.
    eventually("A records", lambda: a_records(_dns(coredns), _fqdn(name, namespace)) == want, 15)
    srv = srv_records(_dns(coredns), f"_http._tcp.{_fqdn(name, namespace)}")
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
    status = eventually("healthy status", lambda: _healthy(control_plane, namespace, name), 10)
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
    dsvc, eas = _dsvc_from_example(emulator, namespace, poll="2s")
    emulator.set_instances(eas, _instances(("10.21.0.1", 8000), ("10.21.0.2", 8000)))
    apply(control_plane, dsvc)
    fqdn = _fqdn(dsvc["metadata"]["name"], namespace)
    eventually(
        "first answer", lambda: a_records(_dns(coredns), fqdn) == {"10.21.0.1", "10.21.0.2"}, 15
    )

    emulator.set_instances(eas, _instances(("10.21.0.2", 8000), ("10.21.0.9", 8000)))
    changed_at = time.monotonic()
    eventually(
        "changed answer",
        lambda: a_records(_dns(coredns), fqdn) == {"10.21.0.2", "10.21.0.9"},
        2 + DNS_TTL + 3,
    )
    assert time.monotonic() - changed_at <= 2 * 1.05 + DNS_TTL + 3


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
    dsvc, eas = _dsvc_from_example(emulator, namespace, poll="1s", read_timeout="1s")
    name = dsvc["metadata"]["name"]
    emulator.set_instances(eas, _instances(("10.22.0.1", 9000), ("10.22.0.2", 9000)))
    apply(control_plane, dsvc)
    fqdn = _fqdn(name, namespace)
    eventually("healthy", lambda: _healthy(control_plane, namespace, name), 15)
    before = slices_of(control_plane, namespace, name)
    service_before = get_json(control_plane, "service", name, "-n", namespace)

    mode = fault.pop("mode")
    emulator.add_fault(mode, service=eas, **fault)
    try:

        def failed() -> dict[str, Any] | None:
            dsvc_now = get_json(control_plane, "dsvc", name, "-n", namespace)
            cond = condition(dsvc_now, "DiscoveryHealthy")
            return cond if cond.get("status") == "False" else None

        cond = eventually("DiscoveryHealthy=False", failed, 15)
        assert cond["reason"] == reason
        assert cond["message"]
        time.sleep(3)  # several more failing polls
        assert slices_of(control_plane, namespace, name) == before  # byte-for-byte
        assert get_json(control_plane, "service", name, "-n", namespace) == service_before
        assert a_records(_dns(coredns), fqdn) == {"10.22.0.1", "10.22.0.2"}
        warnings = [e for e in events_for(control_plane, namespace, name) if e["reason"] == reason]
        assert len(warnings) == 1, "an Event on the transition only"
    finally:
        emulator.clear_faults()
    eventually("recovered", lambda: _healthy(control_plane, namespace, name), 30)


def test_instances_on_two_ports_get_two_slices_and_srv_ports(
    control_plane: ControlPlane,
    coredns: CoreDNS,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    dsvc, eas = _dsvc_from_example(emulator, namespace, poll="2s")
    name = dsvc["metadata"]["name"]
    emulator.set_instances(eas, _instances(("10.23.0.1", 50000), ("10.23.0.2", 50001)))
    apply(control_plane, dsvc)
    srv_name = f"_http._tcp.{_fqdn(name, namespace)}"
    want = {("10.23.0.1", 50000), ("10.23.0.2", 50001)}
    eventually("SRV answers", lambda: srv_records(_dns(coredns), srv_name) == want, 15)
    slices = slices_of(control_plane, namespace, name)
    assert sorted(s["ports"][0]["port"] for s in slices) == [50000, 50001]
    assert all(len(s["endpoints"]) == 1 for s in slices)


def test_steady_state_writes_nothing(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    dsvc, eas = _dsvc_from_example(emulator, namespace, poll="1s")
    name = dsvc["metadata"]["name"]
    emulator.set_instances(eas, _instances(("10.24.0.1", 7000), ("10.24.0.2", 7000)))
    apply(control_plane, dsvc)
    eventually("healthy", lambda: _healthy(control_plane, namespace, name), 15)
    time.sleep(1.5)

    def versions() -> dict[str, str]:
        objs = get_json(control_plane, "dsvc,service,endpointslices,events", "-n", namespace)
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in objs["items"]
        }

    before = versions()
    polls_before = emulator.requests(eas)["total"]
    time.sleep(5)
    assert emulator.requests(eas)["total"] - polls_before >= 3, "the operator kept polling"
    assert versions() == before


def test_deleting_the_directservice_removes_service_and_slices(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    dsvc, eas = _dsvc_from_example(emulator, namespace, poll="1s")
    name = dsvc["metadata"]["name"]
    emulator.set_instances(eas, _instances(("10.25.0.1", 7000)))
    apply(control_plane, dsvc)
    eventually("slices", lambda: slices_of(control_plane, namespace, name), 15)

    control_plane.kubectl("delete", "dsvc", name, "-n", namespace, "--wait=true")
    assert slices_of(control_plane, namespace, name) == []
    gone = control_plane.kubectl("get", "service", name, "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
