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
import urllib.request
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    HEALTHY,
    PROJECT,
    all_dsvcs,
    condition,
    create,
    directservice,
    discovery_count,
    emulator_requests,
    events,
    events_with,
    eventually,
    iam_user,
    model_arts,
    pai_eas,
    patch,
    secret,
    wait_for_count,
    wait_health,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e

FAST_BUDGET = {"callsPerMinute": 600}  # stay clear of the 20/min ModelArts default


def _service(emulator: EmulatorThread, prefix: str, instances: list[Any], **kw: Any) -> str:
    name = f"{prefix}-{secrets.token_hex(4)}"
    emulator.set_instances(name, instances, **kw)
    return name


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
    user, password = iam_user(emulator, "sec")
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
            model_arts(emulator, ma, "ma-token", token_key="token"),
            rateBudget=FAST_BUDGET,
        ),
    )
    create(cp, directservice(namespace, "hj", _http_json(emulator, hj, "hj-token")))

    missing = wait_health(cp, namespace, "ma", "False", "SecretNotFound")
    cond = condition(missing, HEALTHY)
    assert f"Secret {namespace}/ma-token does not exist" in cond["message"]
    no_key = wait_health(cp, namespace, "hj", "False", "SecretKeyMissing")
    cond = condition(no_key, HEALTHY)
    assert f"Secret {namespace}/hj-token" in cond["message"] and "token" in cond["message"]
    assert emulator_requests(emulator, ma) == 0 and emulator_requests(emulator, hj) == 0

    # Keep failing for a while: no crash loop, one Event each, the bystander keeps working.
    wait_health(cp, namespace, "bystander", "True", "DiscoverySucceeded")
    polls_before = emulator_requests(emulator, eas)
    wait_for_count(
        "more failing polls of ma",
        lambda: discovery_count(operator, "modelArts", "SecretNotFound"),
        discovery_count(operator, "modelArts", "SecretNotFound") + 2,
        20,
    )
    # The bystander polls on its own schedule: count its polls rather than compare paces.
    wait_for_count(
        "the bystander still polling",
        lambda: emulator_requests(emulator, eas),
        polls_before + 2,
        20,
    )
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
    wait_published(cp, namespace, "hj", {("10.90.0.1", 8080)}, timeout=30)
    wait_health(cp, namespace, "hj", "True", timeout=5)
    assert operator.pid == pid and _live(operator)


def test_credentials_never_appear_in_logs_events_status_or_metrics(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    cp = control_plane
    good = [{"ip": "10.91.0.1", "port": 8080}, {"ip": "10.91.0.2", "port": 8080}]
    pw_user, password = iam_user(emulator, "leak-pw")
    tok_user, tok_password = iam_user(emulator, "leak-tok")
    token = emulator.login(tok_user, tok_password, "acme", PROJECT)
    hdr_user, hdr_password = iam_user(emulator, "leak-hdr")
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
        "pw": model_arts(emulator, svc_pw, "iam"),
        "tok": model_arts(emulator, svc_tok, "token", token_key="token"),
        "hdr": _http_json(emulator, svc_hdr, "header"),
        "e401": model_arts(emulator, svc_401, "token", token_key="token"),
        "junk": model_arts(emulator, svc_junk, "token", token_key="token"),
        "redir": model_arts(emulator, svc_redirect, "token", token_key="token"),
        "wrong": model_arts(emulator, svc_wrong, "iam-wrong"),
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
    # More polls of every service the emulator answers, logged and counted ("wrong" is not
    # retried until its Secret changes: its IAM login was refused).
    for service_id in (svc_pw, svc_tok, svc_hdr, svc_401, svc_junk, svc_redirect):
        wait_requests(emulator, service_id, 1)

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
