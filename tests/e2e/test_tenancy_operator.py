"""Tenancy with the real operator: its kopf indexes and watch selectors, status, Events,
metrics and the delete handler, against objects of other owners in its namespace.

The operator is one of the module's own, for NAMESPACE only, on a control plane of its own
(as in test_restart.py): the session's cluster-wide operator would otherwise reconcile the
same DirectServices. CoreDNS on that control plane shows what a slice that is not ours does
to our name.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.operatorproc import OperatorProcess
from devenv.tools import Tools
from directservice.api.names import Owner
from directservice.core.model import (
    AddressFamily,
    DesiredSlice,
    EndpointState,
    ServiceShape,
    SliceContent,
    SliceKey,
)
from directservice.emulator.runner import EmulatorThread
from directservice.publish.render import build_endpoint_slice, build_service
from support import (
    HEALTHY,
    all_dsvcs,
    apply,
    condition,
    directservice,
    events_with,
    eventually,
    get_dsvc,
    health,
    pai_eas,
    running,
    wait_health,
    wait_requests,
)
from tenancy import (
    OUR_SERVICE_LABELS,
    SERVICE_NAME,
    SERVICES,
    SLICES,
    make_service,
    make_slice,
    our_slice_labels,
    ref,
    service_now,
    slices_by_name,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "tenancy"
DSVC_API = "/apis/directservice.io/v1alpha1"


@pytest.fixture(scope="module")
def tenant_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("tenancy")) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc):
        yield proc


@pytest.fixture(scope="module")
def tenant_dns(own_cluster: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    with CoreDNS(own_cluster, binary=tools.coredns) as dns:
        yield dns


def start(cp: ControlPlane, emulator: EmulatorThread, name: str, *ips: str) -> str:
    """DirectService `name` publishing `ips` on port 9000; returns its EAS service."""
    eas = f"{name.replace('-', '_')}_{secrets.token_hex(4)}"
    emulator.set_instances(eas, [{"ip": ip, "port": 9000} for ip in ips])
    apply(cp, directservice(NAMESPACE, name, pai_eas(emulator.url, eas)))
    return eas


def status_of(cp: ControlPlane, name: str) -> dict[str, Any]:
    return dict(get_dsvc(cp, NAMESPACE, name).get("status") or {})


def conflicting(operator: OperatorProcess, name: str) -> float | None:
    """directservice_conflicting_objects of DirectService `name`, as the operator exports it."""
    wanted = {"namespace": NAMESPACE, "name": name}
    for family in text_string_to_metric_families(operator.metrics_text()):
        for sample in family.samples:
            if sample.name == "directservice_conflicting_objects" and sample.labels == wanted:
                return float(sample.value)
    return None


def test_a_slice_under_our_name_is_reported_never_touched_and_served_by_coredns(
    own_cluster: ControlPlane,
    tenant_operator: OperatorProcess,
    tenant_dns: CoreDNS,
    emulator: EmulatorThread,
) -> None:
    cp = own_cluster
    theirs = make_slice(cp, NAMESPACE, "alpha-v4-0", {SERVICE_NAME: "alpha"}, ip="10.77.0.9")
    eas = start(cp, emulator, "alpha", "10.77.0.1")

    said = eventually("status.conflicts", lambda: status_of(cp, "alpha").get("conflicts"), 20)
    assert said == [
        "EndpointSlice alpha-v4-0 is not managed by directservice.io; CoreDNS serves its "
        f"addresses under alpha.{NAMESPACE}.svc too"
    ]
    assert health(cp, NAMESPACE, "alpha")["status"] == "True"
    fqdn = f"alpha.{NAMESPACE}.svc.cluster.local"
    # What the message warns about: DNS answers with their address as well as ours.
    both = {"10.77.0.1", "10.77.0.9"}
    eventually("A records", lambda: a_records(tenant_dns.address, fqdn) == both, 20)
    assert conflicting(tenant_operator, "alpha") == 1
    wait_requests(emulator, eas, 3)
    assert len(events_with(cp, NAMESPACE, "alpha", "Conflict", "Warning")) == 1
    current = slices_by_name(cp, NAMESPACE)
    assert current["alpha-v4-0"] == theirs  # its name taken: ours is alpha-v4-1
    assert [n for n in current if n.startswith("alpha-")] == ["alpha-v4-0", "alpha-v4-1"]

    cp.request("DELETE", f"{DSVC_API}/namespaces/{NAMESPACE}/directservices/alpha")
    eventually("our slice gone", lambda: "alpha-v4-1" not in slices_by_name(cp, NAMESPACE), 20)
    assert slices_by_name(cp, NAMESPACE)["alpha-v4-0"] == theirs
    eventually("its series gone", lambda: conflicting(tenant_operator, "alpha") is None, 20)


def test_a_service_of_another_owner_is_conflict_and_untouched_until_it_goes(
    own_cluster: ControlPlane, tenant_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    cp = own_cluster
    theirs = make_service(cp, NAMESPACE, "beta", OUR_SERVICE_LABELS, ref("gamma", "uid-gamma"))
    eas = start(cp, emulator, "beta", "10.77.1.1")

    dsvc = wait_health(cp, NAMESPACE, "beta", "False", "Conflict")
    message = condition(dsvc, HEALTHY)["message"]
    assert message.startswith(f"Service beta is owned by DirectService {NAMESPACE}/gamma")
    wait_requests(emulator, eas, 3)
    assert service_now(cp, NAMESPACE, "beta") == theirs
    assert [n for n in slices_by_name(cp, NAMESPACE) if n.startswith("beta-")] == []
    assert conflicting(tenant_operator, "beta") == 1

    cp.request("DELETE", f"{SERVICES.format(ns=NAMESPACE)}/beta")
    wait_health(cp, NAMESPACE, "beta", "True", timeout=60)  # backed off meanwhile
    ours = service_now(cp, NAMESPACE, "beta")["metadata"]
    assert ours["labels"] == OUR_SERVICE_LABELS
    assert [r["name"] for r in ours["ownerReferences"]] == ["beta"]


def test_a_name_collision_outside_every_watch_is_one_conflict_then_another_name(
    own_cluster: ControlPlane, tenant_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    cp = own_cluster
    theirs = make_slice(cp, NAMESPACE, "delta-v4-0", {SERVICE_NAME: "elsewhere"})
    start(cp, emulator, "delta", "10.77.2.1")

    wait_health(cp, NAMESPACE, "delta", "True", timeout=30)

    conflicts = events_with(cp, NAMESPACE, "delta", "Conflict", "Warning")
    assert [e["message"] for e in conflicts] == [
        "EndpointSlice delta-v4-0 exists and is not managed by directservice.io: it is left "
        "alone, and the next poll publishes under another name"
    ]
    current = slices_by_name(cp, NAMESPACE)
    assert current["delta-v4-0"] == theirs
    assert current["delta-v4-1"]["endpoints"][0]["addresses"] == ["10.77.2.1"]


def test_leftovers_are_adopted_and_a_lookalike_of_another_owner_survives_deletion(
    own_cluster: ControlPlane, tenant_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    """The DirectService was deleted and is created again: no garbage collector here, so
    what the old UID owned is still there. A slice with our labels that another
    DirectService owns must survive the new one's deletion (a delete by label would not)."""
    cp = own_cluster
    before = Owner(NAMESPACE, "omega", "uid-before")  # what the old DirectService wrote
    shape = ServiceShape("http", 9000, None, before.uid)
    cp.request("POST", SERVICES.format(ns=NAMESPACE), build_service(before, shape))
    endpoint = ("10.77.3.1", EndpointState(ready=True, weight=100))
    content = SliceContent(SliceKey(AddressFamily.IPV4, 9000, None), "http", (endpoint,))
    left = build_endpoint_slice(before, DesiredSlice("omega-v4-0", content))
    cp.request("POST", SLICES.format(ns=NAMESPACE), left)
    lookalike = make_slice(
        cp, NAMESPACE, "omega-v4-5", our_slice_labels("omega"), ref("sigma", "uid-sigma")
    )
    start(cp, emulator, "omega", "10.77.3.1")
    uid = get_dsvc(cp, NAMESPACE, "omega")["metadata"]["uid"]

    def adopted() -> bool:
        found = slices_by_name(cp, NAMESPACE).get("omega-v4-0") or {"metadata": {}}
        refs = found["metadata"].get("ownerReferences") or []
        return [r["uid"] for r in refs] == [uid]

    eventually("the old slice adopted", adopted, 20)
    refs = service_now(cp, NAMESPACE, "omega")["metadata"]["ownerReferences"]
    assert [r["uid"] for r in refs] == [uid]
    names = [n for n in slices_by_name(cp, NAMESPACE) if n.startswith("omega-")]
    assert names == ["omega-v4-0", "omega-v4-5"]  # rewritten in place, none added
    assert f"owned by DirectService {NAMESPACE}/sigma" in status_of(cp, "omega")["conflicts"][0]

    cp.request("DELETE", f"{DSVC_API}/namespaces/{NAMESPACE}/directservices/omega")

    def cleaned() -> bool:
        names = [n for n in slices_by_name(cp, NAMESPACE) if n.startswith("omega-")]
        return names == ["omega-v4-5"]

    eventually("our slices deleted, the lookalike left", cleaned, 20)
    assert slices_by_name(cp, NAMESPACE)["omega-v4-5"] == lookalike

    def gone() -> bool:
        return "omega" not in [d["metadata"]["name"] for d in all_dsvcs(cp, NAMESPACE)]

    eventually("the DirectService gone", gone, 20)
