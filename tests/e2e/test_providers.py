"""Every provider end to end: DirectService → discovery (emulator) → Service + EndpointSlices.

paiEas is covered by test_walking_skeleton.py. Here: modelArts with a ready token from a
Secret and with IAM password login (the emulator's IAM issues the token, and its ModelArts
API refuses calls without a valid X-Auth-Token), httpJson with a header from a Secret key, a
list path and renamed fields, and static. All against the real API server and the operator
process; instance addresses are 10.x test addresses that nobody contacts.
"""

from __future__ import annotations

import secrets

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    PROJECT,
    create,
    directservice,
    endpoint_details,
    iam_user,
    model_arts,
    secret,
    service,
    slices,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e


def _unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _assert_headless_service(cp: ControlPlane, namespace: str, name: str, port: int) -> None:
    svc = service(cp, namespace, name)
    assert svc is not None
    assert svc["spec"]["clusterIP"] == "None"
    assert "selector" not in svc["spec"]
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("http", port)]


@pytest.mark.parametrize("auth", ["token", "password"])
def test_modelarts_publishes_instances_with_scheme_as_app_protocol(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
    auth: str,
) -> None:
    user, password = iam_user(emulator, "ma-user", [{"id": PROJECT, "name": "cn-north-4"}])
    domain = "acme"
    service_id = _unique("ocr")
    emulator.set_instances(
        service_id,
        [
            {"ip": "10.31.0.1", "port": 8080},  # the emulator's default schema: http
            {"ip": "10.31.0.2", "port": 8080, "schema": "https"},
            {"ip": "10.31.0.3", "port": 8443, "schema": "https"},
        ],
    )
    if auth == "token":
        token = emulator.login(user, password, domain, PROJECT)
        create(control_plane, secret(namespace, "modelarts-creds", {"token": token}))
        provider = model_arts(emulator, service_id, "modelarts-creds", token_key="token")
    else:
        creds = {"username": user, "password": password, "domainName": domain}
        create(control_plane, secret(namespace, "modelarts-creds", creds))
        provider = model_arts(emulator, service_id, "modelarts-creds")
    create(
        control_plane,
        directservice(namespace, "ocr", provider, rateBudget={"callsPerMinute": 600}),
    )

    want = {("10.31.0.1", 8080), ("10.31.0.2", 8080), ("10.31.0.3", 8443)}
    published = wait_published(control_plane, namespace, "ocr", want)
    # One slice per (port, scheme): the https instances are not mixed with the http one.
    shapes = sorted(
        (s["ports"][0]["port"], s["ports"][0].get("appProtocol"), len(s["endpoints"]))
        for s in published
    )
    assert shapes == [(8080, "http", 1), (8080, "https", 1), (8443, "https", 1)]
    details = endpoint_details(published)
    assert details["10.31.0.1"]["appProtocol"] == "http"
    assert details["10.31.0.2"]["appProtocol"] == "https"
    assert details["10.31.0.3"]["appProtocol"] == "https"
    assert all(d["ready"] for d in details.values())
    _assert_headless_service(control_plane, namespace, "ocr", 8080)

    dsvc = wait_health(control_plane, namespace, "ocr", "True", "DiscoverySucceeded")
    assert dsvc["status"]["provider"] == "modelArts"
    assert dsvc["status"]["readyEndpoints"] == 3

    # Every call carried a token the emulated IAM issued to this user (anything else is 401).
    log = emulator.requests(service_id)["log"]
    assert log
    assert {(r["status"], r["credential"]) for r in log} == {(200, f"user:{user}")}
    assert all(r["headers"].get("X-Auth-Token") for r in log)
    # token: the test's own login; password: the operator's single login, then cached.
    assert emulator.iam()["logins"].get(user, 0) == 1


def test_http_json_reads_list_path_and_fields_with_a_header_from_a_secret(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    # The ModelArts API of the emulator serves as a generic JSON endpoint that checks a
    # header: X-Auth-Token must be a token its IAM issued. Instances are served as written
    # (fill_defaults off), under the list key "endpoints", with this registry's own names.
    user, password = iam_user(emulator, "hj-user")
    token = emulator.login(user, password, "acme", PROJECT)
    registry = _unique("ranker")
    emulator.set_instances(
        registry,
        [
            {"addr": "10.41.0.1", "p": 8080, "w": 10, "healthy": True, "name": "ranker-1"},
            {"addr": "10.41.0.2", "p": "8080", "w": "5", "healthy": "stopped"},
            {"addr": "10.41.0.3", "p": 9090, "healthy": "running"},
        ],
        fill_defaults=False,
    )
    create(control_plane, secret(namespace, "registry-token", {"token": token + "\n"}))
    request_id = _unique("caller")
    provider = {
        "httpJson": {
            "url": emulator.modelarts_url(PROJECT, registry),
            "headers": [
                {
                    "name": "X-Auth-Token",
                    "valueFrom": {"secretKeyRef": {"name": "registry-token", "key": "token"}},
                },
                {"name": "X-Request-Id", "value": request_id},
            ],
            "listPath": "endpoints",
            "fields": {
                "ip": "addr",
                "port": "p",
                "weight": "w",
                "ready": "healthy",
                "hostname": "name",
            },
        }
    }
    create(control_plane, directservice(namespace, "ranker", provider))

    want = {("10.41.0.1", 8080), ("10.41.0.2", 8080), ("10.41.0.3", 9090)}
    published = wait_published(control_plane, namespace, "ranker", want)
    details = endpoint_details(published)
    assert details["10.41.0.1"] == {
        "port": 8080,
        "appProtocol": None,
        "ready": True,
        "hostname": "ranker-1",
    }
    assert details["10.41.0.2"]["ready"] is False  # healthy: "stopped"
    assert details["10.41.0.3"]["ready"] is True
    assert sorted(s["ports"][0]["port"] for s in published) == [8080, 9090]
    _assert_headless_service(control_plane, namespace, "ranker", 8080)
    dsvc = wait_health(control_plane, namespace, "ranker", "True", "DiscoverySucceeded")
    assert (dsvc["status"]["readyEndpoints"], dsvc["status"]["totalEndpoints"]) == (2, 3)

    log = emulator.requests(registry)["log"]
    assert log and all(r["status"] == 200 for r in log)
    # The Secret's value (trimmed) and the literal header were both sent.
    assert {r["headers"].get("X-Auth-Token") for r in log} == {token}
    assert {r["headers"].get("X-Request-Id") for r in log} == {request_id}


def test_static_instances_are_published(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    namespace: str,
) -> None:
    provider = {
        "static": {
            "instances": [
                {"ip": "10.20.0.11", "port": 9000},
                {"ip": "10.20.0.12", "port": 9000, "weight": 50},
                {"ip": "10.20.0.13", "port": 9000, "ready": False, "hostname": "scorer-3"},
                {"ip": "10.20.0.14", "port": 9001, "weight": 0},
            ]
        }
    }
    create(
        control_plane,
        directservice(namespace, "scorer", provider, port={"name": "http", "appProtocol": "http"}),
    )
    want = {("10.20.0.11", 9000), ("10.20.0.12", 9000), ("10.20.0.13", 9000), ("10.20.0.14", 9001)}
    published = wait_published(control_plane, namespace, "scorer", want)
    details = endpoint_details(published)
    assert {ip: d["ready"] for ip, d in details.items()} == {
        "10.20.0.11": True,
        "10.20.0.12": True,
        "10.20.0.13": False,
        "10.20.0.14": False,
    }
    assert details["10.20.0.13"]["hostname"] == "scorer-3"
    assert {d["appProtocol"] for d in details.values()} == {"http"}
    assert sorted((s["ports"][0]["port"], len(s["endpoints"])) for s in published) == [
        (9000, 3),
        (9001, 1),
    ]
    _assert_headless_service(control_plane, namespace, "scorer", 9000)
    dsvc = wait_health(control_plane, namespace, "scorer", "True", "DiscoverySucceeded")
    assert dsvc["status"]["provider"] == "static"
    assert (dsvc["status"]["readyEndpoints"], dsvc["status"]["totalEndpoints"]) == (2, 4)
    assert slices(control_plane, namespace, "scorer") == published  # nothing rewritten since
