"""The operator's bounds, end to end: an operator started like a production one, without the
loopback opt-in the other tests give theirs, refuses to call discovery on loopback, and never
publishes an address in the cluster's own networks or a cloud metadata address.

The operator is the test module's own, on a control plane of its own. The emulator listens
on 127.0.0.1; the published addresses are test addresses no traffic is sent to.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    condition,
    create,
    directservice,
    discovery_count,
    events_with,
    eventually,
    get_dsvc,
    pai_eas,
    running,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "bounds"
FLAGS = [
    "-n", NAMESPACE,
    # Host names allowed, addresses not: no --allow-discovery-cidr.
    "--allowed-host=127.0.0.1", "--allowed-host=localhost",
    "--service-cidr=10.96.0.0/12", "--pod-cidr=10.244.0.0/16", "--denied-cidr=10.70.0.0/24",
]  # fmt: skip


@pytest.fixture(scope="module")
def bounded(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("bounded-operator") / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, FLAGS, loopback_discovery=False)
    with running(proc) as started:
        yield started


def _message(cp: ControlPlane, name: str) -> str:
    return str(condition(get_dsvc(cp, NAMESPACE, name), "DiscoveryHealthy")["message"])


def test_discovery_on_loopback_is_refused_before_any_request(
    own_cluster: ControlPlane, bounded: OperatorProcess, emulator: EmulatorThread
) -> None:
    cp, port = own_cluster, emulator.port
    targets = {
        "literal": (f"http://127.0.0.1:{port}", "AddressNotAllowed", "127.0.0.1 (loopback)"),
        "named": (f"http://localhost:{port}", "AddressNotAllowed", "localhost resolved to"),
        "unlisted": (f"http://127.0.0.2:{port}", "HostNotAllowed", "allowed hosts for paiEas"),
    }
    services = {name: f"bounds_{name}_{secrets.token_hex(3)}" for name in targets}
    for name, (endpoint, _, _) in targets.items():
        emulator.set_instances(services[name], [{"ip": "10.50.0.1", "port": 8000}])
        create(cp, directservice(NAMESPACE, name, pai_eas(endpoint, services[name])))
    for name, (_, reason, text) in targets.items():
        wait_health(cp, NAMESPACE, name, "False", reason)
        assert text in _message(cp, name)
    # A few more refused polls, then: not one request reached the emulator, nothing published.
    refused = discovery_count(bounded, "paiEas", "AddressNotAllowed")
    wait_for_count(
        "more refused polls",
        lambda: discovery_count(bounded, "paiEas", "AddressNotAllowed"),
        refused + 4,
        40,
    )
    for name in targets:
        assert emulator.requests(services[name])["total"] == 0, name
        assert slices(cp, NAMESPACE, name) == [], name


def test_published_addresses_stay_out_of_the_cluster_and_the_metadata_service(
    own_cluster: ControlPlane, bounded: OperatorProcess
) -> None:
    cp, name = own_cluster, "everywhere"
    instances = [
        {"ip": "10.96.0.10", "port": 53},  # --service-cidr
        {"ip": "10.244.3.4", "port": 80},  # --pod-cidr
        {"ip": "10.70.0.9", "port": 80},  # --denied-cidr
        {"ip": "100.100.100.200", "port": 80},  # Alibaba Cloud's metadata service
        {"ip": "10.50.0.1", "port": 80},
    ]
    provider = {"static": {"instances": instances}}
    create(cp, directservice(NAMESPACE, name, provider, allowedCIDRs=["0.0.0.0/0", "::/0"]))
    wait_published(cp, NAMESPACE, name, {("10.50.0.1", 80)})
    status = wait_health(cp, NAMESPACE, name, "True")["status"]
    assert status["droppedEntries"] == 4
    event = eventually(
        "the EntriesDropped Event",
        lambda: events_with(cp, NAMESPACE, name, "EntriesDropped", "Warning"),
        20,
    )[0]
    for reason in (
        "address 10.96.0.10 is in the cluster's Service network 10.96.0.0/12",
        "address 10.244.3.4 is in the cluster's pod network 10.244.0.0/16",
        "address 10.70.0.9 is in a network the operator denies 10.70.0.0/24",
        "address 100.100.100.200 is a cloud metadata service",
    ):
        assert reason in event["message"], event["message"]
