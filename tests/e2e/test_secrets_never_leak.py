"""Credentials from Secrets, through the operator process.

- A missing Secret or key is a clear condition (SecretNotFound, SecretKeyMissing), never a
  crash: the operator keeps running and its other DirectServices keep working; fixing the
  Secret recovers.
- Tokens and passwords never show up in the operator's log, in Events, in status or in
  metrics, even when the discovery server echoes them back in an entry, an error body or a
  redirect (the operator replaces them with [redacted]).
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from typing import Any

import pytest

from clusterhelpers import eventually
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from dsvcsupport import (
    all_dsvcs,
    create,
    directservice,
    discovery_count,
    events,
    events_with,
    pai_eas,
    patch,
    secret,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

PROJECT = "0123456789abcdef0123456789abcdef"
FAST_BUDGET = {"callsPerMinute": 600}  # stay clear of the 20/min ModelArts default


def _iam_user(emulator: EmulatorThread, prefix: str) -> tuple[str, str]:
    user, password = f"{prefix}-{secrets.token_hex(4)}", "pw-" + secrets.token_hex(12)
    emulator.put_iam_user(user, password, "acme")
    return user, password


def _service(emulator: EmulatorThread, prefix: str, instances: list[Any], **kw: Any) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    emulator.set_instances(name, instances, **kw)
    return name


def _modelarts(
    emulator: EmulatorThread, service_id: str, secret_name: str, *, token: bool
) -> dict[str, Any]:
    ref: dict[str, str] = {"name": secret_name}
    provider: dict[str, Any] = {
        "endpoint": emulator.url,
        "projectId": PROJECT,
        "serviceId": service_id,
        "credentialsSecretRef": ref,
    }
    if token:
        ref["tokenKey"] = "token"
    else:
        provider["iamEndpoint"] = emulator.iam_url
    return {"modelArts": provider}


def _http_json(emulator: EmulatorThread, service_id: str, secret_name: str) -> dict[str, Any]:
    header = {
        "name": "X-Auth-Token",
        "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "token"}},
    }
    return {
        "httpJson": {
            "url": emulator.modelarts_url(PROJECT, service_id),
            "headers": [header],
            "listPath": "endpoints",
        }
    }


def _live(operator: OperatorProcess) -> bool:
    url = f"http://127.0.0.1:{operator.liveness_port}/healthz"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def test_missing_secret_or_key_is_reported_and_nothing_else_suffers(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    cp = control_plane
    pid = operator.pid
    log_start = operator.log_path.stat().st_size
    user, password = _iam_user(emulator, "sec")
    token = emulator.login(user, password, "acme", PROJECT)
    good = [{"ip": "10.90.0.1", "port": 8080}]
    eas = _service(emulator, "bystander", good)
    ma = _service(emulator, "ma", good)
    hj = _service(emulator, "hj", good)
    create(cp, directservice(namespace, "bystander", pai_eas(emulator.url, eas)))
    # "ma" names a Secret that does not exist; "hj" one that lacks the key it names.
    create(cp, secret(namespace, "hj-token", {"other": "x"}))
    create(
        cp,
        directservice(
            namespace,
            "ma",
            _modelarts(emulator, ma, "ma-token", token=True),
            rateBudget=FAST_BUDGET,
        ),
    )
    create(cp, directservice(namespace, "hj", _http_json(emulator, hj, "hj-token")))

    missing = wait_health(cp, namespace, "ma", "False", "SecretNotFound")
    cond = next(c for c in missing["status"]["conditions"] if c["type"] == "DiscoveryHealthy")
    assert f"Secret {namespace}/ma-token does not exist" in cond["message"]
    no_key = wait_health(cp, namespace, "hj", "False", "SecretKeyMissing")
    cond = next(c for c in no_key["status"]["conditions"] if c["type"] == "DiscoveryHealthy")
    assert f"Secret {namespace}/hj-token" in cond["message"] and "token" in cond["message"]
    assert emulator.requests(ma)["total"] == 0 and emulator.requests(hj)["total"] == 0

    # Keep failing for a while: no crash loop, one Event each, the bystander keeps working.
    wait_health(cp, namespace, "bystander", "True", "DiscoverySucceeded")
    polls_before = emulator.requests(eas)["total"]
    not_found_before = discovery_count(operator, "modelArts", "SecretNotFound")
    eventually(
        "more failing polls of ma",
        lambda: discovery_count(operator, "modelArts", "SecretNotFound") - not_found_before >= 2,
        20,
    )
    assert emulator.requests(eas)["total"] - polls_before >= 2, "the bystander kept polling"
    wait_health(cp, namespace, "bystander", "True", "DiscoverySucceeded", timeout=1)
    assert operator.pid == pid and _live(operator)
    assert len(events_with(cp, namespace, "ma", "SecretNotFound", "Warning")) == 1
    assert len(events_with(cp, namespace, "hj", "SecretKeyMissing", "Warning")) == 1
    with operator.log_path.open("rb") as log:
        log.seek(log_start)
        assert b"Traceback" not in log.read(), "no handler crashed"

    # Creating the Secret recovers at the next poll (missing Secrets are not cached).
    create(cp, secret(namespace, "ma-token", {"token": token}))
    wait_published(cp, namespace, "ma", {("10.90.0.1", 8080)}, timeout=20)
    wait_health(cp, namespace, "ma", "True", timeout=5)
    # Adding the missing key recovers as well.
    patch(cp, "secret", namespace, "hj-token", {"stringData": {"token": token}})
    fixed_at = time.monotonic()
    wait_published(cp, namespace, "hj", {("10.90.0.1", 8080)}, timeout=30)
    wait_health(cp, namespace, "hj", "True", timeout=5)
    assert time.monotonic() - fixed_at < 30
    assert operator.pid == pid and _live(operator)


def test_credentials_never_appear_in_logs_events_status_or_metrics(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    cp = control_plane
    good = [{"ip": "10.91.0.1", "port": 8080}, {"ip": "10.91.0.2", "port": 8080}]
    pw_user, password = _iam_user(emulator, "leak-pw")
    tok_user, tok_password = _iam_user(emulator, "leak-tok")
    token = emulator.login(tok_user, tok_password, "acme", PROJECT)
    hdr_user, hdr_password = _iam_user(emulator, "leak-hdr")
    header_token = emulator.login(hdr_user, hdr_password, "acme", PROJECT)
    wrong_password = "wrong-" + secrets.token_hex(12)

    login = {"username": pw_user, "domainName": "acme"}
    create(cp, secret(namespace, "iam", {**login, "password": password}))
    create(cp, secret(namespace, "iam-wrong", {**login, "password": wrong_password}))
    create(cp, secret(namespace, "token", {"token": token}))
    create(cp, secret(namespace, "header", {"token": header_token}))

    def echo(value: str) -> list[dict[str, Any]]:
        return [*good, {"ip": value, "port": 8080}]  # the server hands a credential back

    # Entries that echo the credential: dropped, and named with the value redacted.
    svc_pw = _service(emulator, "pw", echo(password))
    svc_tok = _service(emulator, "tok", echo(token))
    svc_hdr = _service(emulator, "hdr", echo(header_token))
    # Error answers that echo the token: a 401 body, a non-JSON body, a redirect's Location.
    svc_401 = _service(emulator, "e401", good)
    svc_junk = _service(emulator, "junk", good)
    svc_redirect = _service(emulator, "redir", good)
    emulator.add_fault(
        "status",
        service=svc_401,
        status=401,
        body=json.dumps({"error_code": "APIGW.0301", "error_msg": f"bad token {token}"}),
        content_type="application/json",
    )
    emulator.add_fault("garbage", service=svc_junk, body=f"<html>token={token}</html>")
    emulator.add_fault(
        "redirect", service=svc_redirect, location=f"http://elsewhere.example/?t={token}"
    )
    svc_wrong = _service(emulator, "wrong", good)

    specs = {
        "pw": _modelarts(emulator, svc_pw, "iam", token=False),
        "tok": _modelarts(emulator, svc_tok, "token", token=True),
        "hdr": _http_json(emulator, svc_hdr, "header"),
        "e401": _modelarts(emulator, svc_401, "token", token=True),
        "junk": _modelarts(emulator, svc_junk, "token", token=True),
        "redir": _modelarts(emulator, svc_redirect, "token", token=True),
        "wrong": _modelarts(emulator, svc_wrong, "iam-wrong", token=False),
    }
    for name, provider in specs.items():
        create(cp, directservice(namespace, name, provider, rateBudget=FAST_BUDGET))

    for name in ("pw", "tok", "hdr"):
        wait_health(cp, namespace, name, "True", "DiscoverySucceeded")
        dropped = eventually(
            f"{name}: EntriesDropped",
            lambda name=name: events_with(cp, namespace, name, "EntriesDropped"),
            10,
        )
        assert "[redacted]:8080" in dropped[0]["message"], dropped[0]["message"]
    for name, reason in (
        ("e401", "Unauthorized"),
        ("junk", "InvalidJSON"),
        ("redir", "Redirected"),
        ("wrong", "CredentialsRejected"),
    ):
        wait_health(cp, namespace, name, "False", reason)
    time.sleep(1.5)  # a few more polls, logged and counted

    # The tokens the operator got from IAM for "pw", as the emulator saw them.
    issued = {
        r["headers"]["X-Auth-Token"]
        for r in emulator.requests(svc_pw)["log"]
        if "X-Auth-Token" in r["headers"]
    }
    assert issued
    values = {
        "password": password,
        "wrong password": wrong_password,
        "token": token,
        "header token": header_token,
        **{f"issued token {i}": value for i, value in enumerate(sorted(issued))},
    }
    places = {
        "operator log": operator.log_path.read_text(errors="replace"),
        "Events": json.dumps(events(cp, namespace)),
        "DirectServices": json.dumps(all_dsvcs(cp, namespace)),
        "metrics": operator.metrics_text(),
    }
    assert namespace in places["operator log"], "the log covers this test's objects"
    leaks = [
        f"{what} in {where}"
        for what, value in values.items()
        for where, text in places.items()
        if value in text
    ]
    assert leaks == []
