"""The emulator's ModelArts flavour and IAM over real loopback HTTP, plus its TLS listener."""

from __future__ import annotations

import contextlib
import datetime
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from directservice.emulator import EmulatorThread
from directservice.emulator.runner import AdminError

pytestmark = pytest.mark.unit

EmulatorCli = Callable[..., contextlib.AbstractContextManager[subprocess.Popen[str]]]
CONFIG = """
services:
  svc-1:
    instances:
      - {ip: 192.168.0.10, port: 31997}
      - {ip: 192.168.0.11, port: 31998, schema: https}
iam:
  token_ttl: 3600
  users:
    - {name: alice, password: pw, domain: acme, projects: [{id: p1, name: cn-north-4}]}
modelarts:
  shape: {list: data.endpoints}
"""


@pytest.fixture
def emu(config_emu: EmulatorThread) -> EmulatorThread:
    """A fresh emulator per test, from CONFIG (`http` is conftest's loopback session)."""
    return config_emu


def login_body(user: str = "alice", password: str = "pw", **scope: str) -> dict[str, Any]:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "password": password, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": scope or {"id": "p1"}},
        }
    }


def test_login_returns_a_token_header_and_expiry(
    emu: EmulatorThread, http: requests.Session
) -> None:
    started = time.time()
    answer = http.post(emu.iam_url + "/v3/auth/tokens", json=login_body(), timeout=5)
    assert answer.status_code == 201
    assert answer.headers["X-Subject-Token"].startswith("MIIE")
    expires = answer.json()["token"]["expires_at"]
    when = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00")).timestamp()
    assert started + 3600 - 5 <= when <= time.time() + 3600
    by_name = http.post(
        emu.iam_url + "/v3/auth/tokens", json=login_body(name="cn-north-4"), timeout=5
    )
    assert by_name.status_code == 201
    assert emu.iam()["logins"] == {"alice": 2}


@pytest.mark.parametrize(
    "body",
    [login_body(password="nope"), login_body(user="mallory"), login_body(id="p2"), {"auth": {}}],
)
def test_bad_logins_are_refused(emu: EmulatorThread, http: requests.Session, body: Any) -> None:
    answer = http.post(emu.iam_url + "/v3/auth/tokens", json=body, timeout=5)
    assert answer.status_code in (400, 401)
    assert "X-Subject-Token" not in answer.headers
    assert emu.iam()["tokens"] == {"valid": 0, "invalid": 0}


def get(
    http: requests.Session, emu: EmulatorThread, token: str | None, **kw: Any
) -> requests.Response:
    headers = {"X-Auth-Token": token} if token is not None else {}
    url = kw.pop("url", None) or emu.modelarts_url("p1", "svc-1")
    return http.get(url, headers=headers, timeout=5)


def test_discovery_with_a_token_in_the_configured_shape(
    emu: EmulatorThread, http: requests.Session
) -> None:
    token = emu.login("alice", "pw", "acme", "p1")
    answer = get(http, emu, token)
    assert answer.status_code == 200
    assert answer.json() == {
        "data": {
            "endpoints": [
                {"schema": "http", "ip": "192.168.0.10", "port": 31997, "weight": 100},
                {"schema": "https", "ip": "192.168.0.11", "port": 31998, "weight": 100},
            ]
        }
    }
    emu.set_modelarts_shape(list="", rename={"ip": "host"}, drop=["app", "weight"], defaults={})
    assert get(http, emu, token).json() == [
        {"host": "192.168.0.10", "port": 31997},
        {"host": "192.168.0.11", "port": 31998, "schema": "https"},
    ]


@pytest.mark.parametrize(
    ("token", "needle"),
    [(None, "x-auth-token not found"), ("forged", "decrypt token fail")],
)
def test_missing_or_unknown_tokens(
    emu: EmulatorThread, http: requests.Session, token: str | None, needle: str
) -> None:
    answer = get(http, emu, token)
    assert answer.status_code == 401
    assert answer.json()["error_code"] == "APIGW.0301"
    assert needle in answer.json()["error_msg"]


def test_revoked_and_expired_tokens(emu: EmulatorThread, http: requests.Session) -> None:
    token = emu.login("alice", "pw", "acme", "p1")
    assert emu.revoke_tokens("alice") == 1
    answer = get(http, emu, token)
    assert (answer.status_code, answer.json()["error_code"]) == (401, "APIGW.0301")
    assert "token expires" in answer.json()["error_msg"]
    assert emu.iam()["tokens"] == {"valid": 0, "invalid": 1}


def test_a_new_password_revokes_tokens_unless_kept(
    emu: EmulatorThread, http: requests.Session
) -> None:
    token = emu.login("alice", "pw", "acme", "p1")
    emu.put_iam_user("alice", "pw2", "acme", [{"id": "p1"}], keep_tokens=True)
    assert get(http, emu, token).status_code == 200
    emu.put_iam_user("alice", "pw3", "acme", [{"id": "p1"}])
    assert get(http, emu, token).status_code == 401
    with pytest.raises(AdminError):
        emu.login("alice", "pw", "acme", "p1")
    assert emu.login("alice", "pw3", "acme", "p1")


def test_project_scope_and_query_are_checked(emu: EmulatorThread, http: requests.Session) -> None:
    emu.put_iam_user("alice", "pw", "acme", [{"id": "p1"}, {"id": "p2"}])
    token = emu.login("alice", "pw", "acme", "p2")
    assert get(http, emu, token).status_code == 403  # a p2 token on a p1 path
    no_type = emu.modelarts_url("p1", "svc-1").split("?")[0]
    token = emu.login("alice", "pw", "acme", "p1")
    answer = get(http, emu, token, url=no_type)
    assert (answer.status_code, answer.json()["error_code"]) == (400, "ModelArts.0104")
    assert get(http, emu, token, url=emu.modelarts_url("p1", "nope")).status_code == 404


def test_faults_and_per_credential_counts(emu: EmulatorThread, http: requests.Session) -> None:
    token = emu.login("alice", "pw", "acme", "p1")
    emu.add_fault("empty", service="svc-1", count=1)
    emu.add_fault("null", service="svc-1", count=1)
    emu.add_fault("wrong_shape", service="svc-1", count=1)
    assert get(http, emu, token).json() == {"data": {"endpoints": []}}
    assert get(http, emu, token).json() == {"data": {"endpoints": None}}
    assert "data" not in get(http, emu, token).json()
    get(http, emu, "forged")
    get(http, emu, None)
    seen = emu.requests()
    assert seen["per_credential"] == {"user:alice": 3, "invalid": 1, "anonymous": 1}
    assert seen["per_service"] == {"svc-1": 5}
    assert {e["flavour"] for e in seen["log"]} == {"modelarts"}


def test_tls_listener_serves_the_same_app(http: requests.Session) -> None:
    with EmulatorThread({"s": [{"ip": "10.0.0.1", "port": 80}]}, tls=True) as emu:
        assert emu.tls is not None and emu.https_url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError):
            http.get(emu.https_url + "/healthz", timeout=5)
        ok = http.get(emu.https_url + "/healthz", verify=str(emu.tls.cert), timeout=5)
        assert ok.json() == {"status": "ok"}
        cert_dir = emu.tls.cert.parent
    assert not cert_dir.exists()  # the throwaway key is removed on stop


def test_the_cli_serves_https_too(emulator_cli: EmulatorCli) -> None:
    with emulator_cli("--port", "0", "--tls-port", "0") as proc:
        assert proc.stdout is not None
        plain = proc.stdout.readline().split()[-1]
        secure = proc.stdout.readline().split()[-1]
        assert plain.startswith("http://") and secure.startswith("https://")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(secure + "/healthz", timeout=5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
