"""Nothing a user, the API server or a stored object does ends a poll loop or leaves a lie.

- Our Service or a slice deleted by hand, right after creation or later, is back within a
  poll; deleting the Service and then the DirectService still lets the DirectService go.
- kube-apiserver restarted under a running operator: a discovery change made during the
  outage is published within a poll of its return, with no operator or daemon restart.
- An object stored with wrong types (under a permissive CRD) gets InvalidSpec naming the
  field, and the fixing edit publishes at once.
- A Secret with a binary key the provider does not read keeps working; a binary key it
  needs gives a clear condition.

A control plane and an operator of this module's own: the API server restart and the CRD
swap must not disturb other tests.
"""

from __future__ import annotations

import base64
import copy
import secrets
import urllib.error
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from devenv.controlplane import DEFAULT_CRD_DIR, ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    DSVC_API,
    addresses,
    create,
    directservice,
    eventually,
    get_dsvc,
    pai_eas,
    patch,
    running,
    service,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "resilience"
CRD_FILE = DEFAULT_CRD_DIR / "directservice.io_directservices.yaml"
PROJECT = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def own_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("resilience-operator") / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc, tail=80) as started:
        yield started


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def polls(emulator: EmulatorThread, svc: str) -> Callable[[], float]:
    return lambda: float(emulator.requests(svc)["total"])


def published(
    own_cluster: ControlPlane, emulator: EmulatorThread, name: str, ips: list[str]
) -> str:
    """A DirectService `name` polling the emulator's service of the same name, published."""
    svc = name.replace("-", "_")
    emulator.set_instances(svc, [{"ip": ip, "port": 8000} for ip in ips])
    create(own_cluster, directservice(NAMESPACE, name, pai_eas(emulator.url, svc)))
    wait_published(own_cluster, NAMESPACE, name, {(ip, 8000) for ip in ips})
    return svc


def back_within_a_poll(
    emulator: EmulatorThread, svc: str, what: str, present: Callable[[], bool]
) -> None:
    """`present()` becomes true again before the operator polls discovery twice more (one
    poll may have been in flight when the object went)."""
    count = polls(emulator, svc)
    start = count()
    eventually(what, lambda: present() or count() > start + 2, 30)
    assert present(), f"{what}: not back after {count() - start:.0f} polls"


def delete(own_cluster: ControlPlane, path: str) -> None:
    own_cluster.request("DELETE", path)


def _our_object(cp: ControlPlane, kind: str, name: str) -> dict[str, Any] | None:
    """The operator's Service, or its first slice, for DirectService `name`."""
    if kind == "Service":
        return service(cp, NAMESPACE, name)
    found = slices(cp, NAMESPACE, name)
    return found[0] if found else None


def _path(kind: str, obj: dict[str, Any]) -> str:
    name = obj["metadata"]["name"]
    if kind == "Service":
        return f"/api/v1/namespaces/{NAMESPACE}/services/{name}"
    return f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/{name}"


@pytest.mark.parametrize("when", ["at once", "later"])
@pytest.mark.parametrize("kind", ["Service", "EndpointSlice"])
def test_a_deleted_object_of_ours_is_recreated_within_a_poll(
    own_cluster: ControlPlane,
    own_operator: OperatorProcess,
    emulator: EmulatorThread,
    kind: str,
    when: str,
) -> None:
    name = unique("gone")
    svc = name.replace("-", "_")
    emulator.set_instances(svc, [{"ip": "10.61.0.1", "port": 8000}])
    create(own_cluster, directservice(NAMESPACE, name, pai_eas(emulator.url, svc)))
    first = eventually(kind, lambda: _our_object(own_cluster, kind, name), 20)
    if when == "later":
        wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded")
        wait_for_count("three polls", polls(emulator, svc), emulator.requests(svc)["total"] + 3, 20)
    delete(own_cluster, _path(kind, first))

    def recreated() -> bool:
        again = _our_object(own_cluster, kind, name)
        return again is not None and again["metadata"]["uid"] != first["metadata"]["uid"]

    back_within_a_poll(emulator, svc, f"the {kind} recreated", recreated)
    assert addresses(slices(own_cluster, NAMESPACE, name)) == {("10.61.0.1", 8000)}
    assert get_dsvc(own_cluster, NAMESPACE, name)["status"]["readyEndpoints"] == 1


def test_deleting_the_service_then_the_directservice_lets_it_go(
    own_cluster: ControlPlane, own_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    name = unique("both-gone")
    published(own_cluster, emulator, name, ["10.61.2.1"])
    delete(own_cluster, f"/api/v1/namespaces/{NAMESPACE}/services/{name}")
    delete(own_cluster, f"{DSVC_API}/namespaces/{NAMESPACE}/directservices/{name}")

    def gone() -> bool:
        try:
            get_dsvc(own_cluster, NAMESPACE, name)
        except urllib.error.HTTPError as err:
            return err.code == 404
        return False

    eventually("the DirectService gone (no 60 s handler retry)", gone, 10)
    assert slices(own_cluster, NAMESPACE, name) == []
    assert service(own_cluster, NAMESPACE, name) is None


def test_an_api_server_restart_is_caught_up_within_a_poll(
    own_cluster: ControlPlane, own_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    name = unique("apiserver")
    svc = published(own_cluster, emulator, name, ["10.61.3.1"])
    pid = own_operator.pid
    count = polls(emulator, svc)

    own_cluster.stop_apiserver()
    try:
        emulator.set_instances(
            svc, [{"ip": "10.61.3.1", "port": 8000}, {"ip": "10.61.3.2", "port": 8000}]
        )
        # The loop keeps polling through the outage, which lasts 16 polls (16 s or more).
        wait_for_count("polls during the outage", count, count() + 16, 60)
    finally:
        own_cluster.start_apiserver()
    returned = count()
    wait_published(own_cluster, NAMESPACE, name, {("10.61.3.1", 8000), ("10.61.3.2", 8000)}, 30)
    assert count() <= returned + 3, "not published within a poll of the API server's return"
    wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded")
    assert own_operator.pid == pid
    log = own_operator.tail(2000)
    assert "Will retry" not in log and "failed with an exception" not in log


def _permissive(crd: dict[str, Any]) -> dict[str, Any]:
    loose = copy.deepcopy(crd)
    for version in loose["spec"]["versions"]:
        props = version["schema"]["openAPIV3Schema"]["properties"]
        props["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return loose


@pytest.mark.parametrize(
    ("field", "bad", "fix"),
    [("port", "http", {"name": "http"}), ("timeouts", "fast", {"connect": "1s", "read": "1s"})],
)
def test_a_spec_stored_with_wrong_types_gets_invalid_spec_and_a_fix_publishes(
    own_cluster: ControlPlane,
    own_operator: OperatorProcess,
    emulator: EmulatorThread,
    field: str,
    bad: str,
    fix: dict[str, Any],
) -> None:
    name = unique("wrong-types")
    svc = name.replace("-", "_")
    emulator.set_instances(svc, [{"ip": "10.61.4.1", "port": 8000}])
    strict = yaml.safe_load(CRD_FILE.read_text())
    own_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(_permissive(strict)))
    try:
        body = directservice(NAMESPACE, name, pai_eas(emulator.url, svc))
        body["spec"][field] = bad

        def accepted() -> bool:  # the API server takes up a CRD's new schema a moment later
            try:
                create(own_cluster, body)
            except urllib.error.HTTPError as err:
                if err.code != 422:  # still the strict schema: try again
                    raise
                return False
            return True

        eventually("the DirectService stored under the loose schema", accepted, 20)
    finally:  # the object stays stored as it is; the strict schema returns for everything else
        own_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(strict))
    dsvc = wait_health(own_cluster, NAMESPACE, name, "False", "InvalidSpec")
    message = next(
        c["message"] for c in dsvc["status"]["conditions"] if c["reason"] == "InvalidSpec"
    )
    assert f"spec.{field}" in message
    patch(own_cluster, "directservice", NAMESPACE, name, {"spec": {field: fix}})
    back_within_a_poll(
        emulator, svc, "published after the fix", lambda: bool(slices(own_cluster, NAMESPACE, name))
    )
    wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded")


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


KEYSTORE = bytes([0x30, 0x82, 0xFF, 0xFE, 0x00, 0xC3, 0x28])  # not UTF-8


@pytest.mark.parametrize("binary", ["other key", "needed key"])
def test_a_secret_with_a_binary_key(
    own_cluster: ControlPlane, own_operator: OperatorProcess, emulator: EmulatorThread, binary: str
) -> None:
    name, user, password = unique("ma-secret"), unique("user"), secrets.token_urlsafe(12)
    emulator.put_iam_user(user, password, "acme", [{"id": PROJECT, "name": "cn-north-4"}])
    emulator.set_instances(name, [{"ip": "10.61.5.1", "port": 8080}])
    token = emulator.login(user, password, "acme", PROJECT).encode()
    data = (
        {"token": token, "keystore.p12": KEYSTORE} if binary == "other key" else {"token": KEYSTORE}
    )
    create(own_cluster, _secret(f"{name}-creds", data))
    provider = {
        "endpoint": emulator.url,
        "projectId": PROJECT,
        "serviceId": name,
        "credentialsSecretRef": {"name": f"{name}-creds", "tokenKey": "token"},
    }
    create(
        own_cluster,
        directservice(NAMESPACE, name, {"modelArts": provider}, rateBudget={"callsPerMinute": 600}),
    )
    if binary == "other key":
        wait_published(own_cluster, NAMESPACE, name, {("10.61.5.1", 8080)})
        wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded")
        count = polls(emulator, name)
        wait_for_count("polling goes on", count, count() + 2, 20)
        return
    dsvc = wait_health(own_cluster, NAMESPACE, name, "False", "InvalidSecretValue")
    message = next(
        c["message"] for c in dsvc["status"]["conditions"] if c["type"] == "DiscoveryHealthy"
    )
    assert f"key token of Secret {NAMESPACE}/{name}-creds" in message
    assert "not UTF-8" in message
    assert emulator.requests(name)["total"] == 0  # nothing was sent with a broken token
