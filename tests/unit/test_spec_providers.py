"""Parsing the modelArts, httpJson and static providers and the discovery-safety fields."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, SpecError
from directservice.discovery import parse_spec
from directservice.discovery.fields import FieldPaths, SecretKeyRef
from directservice.discovery.http_json import HeaderSpec, HttpJsonSpec
from directservice.discovery.modelarts.spec import (
    AUTH_ACCESS_KEY,
    AUTH_PASSWORD,
    AUTH_TOKEN,
    ModelArtsSpec,
)
from directservice.discovery.static import StaticInstance, StaticSpec

pytestmark = pytest.mark.unit

MODELARTS: dict[str, Any] = {
    "endpoint": "https://modelarts.example/",
    "projectId": "p1",
    "serviceId": "s-1",
    "credentialsSecretRef": {"name": "creds"},
    "iamEndpoint": "https://iam.example",
}


def with_provider(kind: str, body: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"provider": {kind: body}, **fields}


def model_arts(**changes: Any) -> dict[str, Any]:
    body = {**MODELARTS, **changes}
    return with_provider("modelArts", {k: v for k, v in body.items() if v is not None})


def test_modelarts_password_is_the_default_with_an_iam_endpoint() -> None:
    parsed = parse_spec(model_arts())
    assert parsed.provider_kind == "modelArts"
    assert parsed.provider == ModelArtsSpec(
        endpoint="https://modelarts.example",
        project_id="p1",
        service_id="s-1",
        secret_name="creds",
        auth_method=AUTH_PASSWORD,
        iam_endpoint="https://iam.example",
    )


def test_modelarts_token_key_selects_token_auth() -> None:
    spec = model_arts(iamEndpoint=None, credentialsSecretRef={"name": "t", "tokenKey": "tok"})
    provider = parse_spec(spec).provider
    assert isinstance(provider, ModelArtsSpec)
    assert (provider.auth_method, provider.token_key) == (AUTH_TOKEN, "tok")


def test_modelarts_explicit_methods() -> None:
    aksk = parse_spec(model_arts(iamEndpoint=None, authMethod="AccessKey")).provider
    token = parse_spec(model_arts(iamEndpoint=None, authMethod="Token")).provider
    assert isinstance(aksk, ModelArtsSpec) and aksk.auth_method == AUTH_ACCESS_KEY
    assert isinstance(token, ModelArtsSpec) and token.token_key == "token"


def test_modelarts_field_paths() -> None:
    provider = parse_spec(model_arts(fields={"list": "data.endpoints", "ip": "host"})).provider
    assert isinstance(provider, ModelArtsSpec)
    assert provider.fields == FieldPaths(list="data.endpoints", ip="host")


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        (model_arts(iamEndpoint=None), "set iamEndpoint"),
        (model_arts(iamEndpoint=None, authMethod="Password"), "iamEndpoint is required"),
        (
            model_arts(authMethod="AccessKey", credentialsSecretRef={"name": "c", "tokenKey": "t"}),
            "only used with authMethod Token",
        ),
        (model_arts(authMethod="Magic"), "set iamEndpoint"),
        (model_arts(projectId="a/b"), "projectId"),
        (model_arts(serviceId=None), "serviceId"),
        (model_arts(credentialsSecretRef=None), "credentialsSecretRef"),
        (model_arts(credentialsSecretRef={"name": "Bad_Name"}), "credentialsSecretRef.name"),
        (model_arts(endpoint="modelarts.example"), "endpoint"),
        (model_arts(fields={"list": "a..b"}), "fields.list"),
        (model_arts(fields={"colour": "x"}), "fields.colour"),
    ],
)
def test_modelarts_errors(spec: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_spec(spec)


def test_modelarts_budget_is_capped_at_the_account_limit() -> None:
    spec = {**model_arts(), "rateBudget": {"callsPerMinute": 2000}}
    assert parse_spec(spec).calls_per_minute == 2000
    with pytest.raises(SpecError, match=r"\(for modelArts\) must be an integer between 1 and 2000"):
        parse_spec({**model_arts(), "rateBudget": {"callsPerMinute": 2001}})


# --- httpJson -----------------------------------------------------------------------------


def test_http_json_defaults() -> None:
    provider = parse_spec(with_provider("httpJson", {"url": "http://r.example/x?a=1"})).provider
    assert provider == HttpJsonSpec(url="http://r.example/x?a=1")
    assert isinstance(provider, HttpJsonSpec)
    assert provider.fields == FieldPaths(ip="ip", port="port", weight="weight")
    assert provider.success_statuses == frozenset({200})


def test_http_json_everything() -> None:
    body = {
        "url": "https://r.example/v1",
        "headers": [
            {"name": "X-Caller", "value": "op"},
            {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
        ],
        "listPath": "data.hosts",
        "fields": {"ip": "addr", "weight": "", "ready": "healthy", "hostname": "name"},
        "successStatuses": [200, 203],
    }
    provider = parse_spec(with_provider("httpJson", body)).provider
    assert isinstance(provider, HttpJsonSpec)
    assert provider.headers == (
        HeaderSpec("X-Caller", value="op"),
        HeaderSpec("Authorization", secret=SecretKeyRef("t", "k")),
    )
    assert provider.list_path == "data.hosts"
    assert provider.fields == FieldPaths(ip="addr", port="port", ready="healthy", hostname="name")
    assert provider.success_statuses == frozenset({200, 203})
    assert "op" not in repr(provider.headers[0])  # literal values stay out of reprs


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": "http://x", "headers": [{"name": "A"}]}, "exactly one of value"),
        ({"url": "http://x", "headers": [{"name": "Host", "value": "h"}]}, "set by the operator"),
        ({"url": "http://x", "headers": [{"name": "A", "value": "a\r\nB: b"}]}, "single-line"),
        ({"url": "http://x", "headers": [{"name": "A B", "value": "v"}]}, "name"),
        ({"url": "http://x", "headers": [{"name": "A", "valueFrom": {}}]}, "secretKeyRef"),
        ({"url": "http://x", "listPath": "a..b"}, "listPath"),
        ({"url": "http://x", "successStatuses": [302]}, "successStatuses"),
        ({"url": "http://x", "fields": {"ip": ""}}, "cannot be unset"),
        ({"url": "http://x", "fields": {"list": "x"}}, "fields.list"),
    ],
)
def test_http_json_errors(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_spec(with_provider("httpJson", body))


# --- static -------------------------------------------------------------------------------


def test_static_instances() -> None:
    body = {
        "instances": [
            {"ip": "10.0.0.1", "port": 80},
            {"ip": "10.0.0.2", "port": 81, "weight": 5, "ready": False, "hostname": "b"},
        ]
    }
    assert parse_spec(with_provider("static", body)).provider == StaticSpec(
        instances=(
            StaticInstance("10.0.0.1", 80),
            StaticInstance("10.0.0.2", 81, weight=5.0, ready=False, hostname="b"),
        )
    )


@pytest.mark.parametrize(
    "instances",
    [
        [],
        None,
        [{"port": 80}],
        [{"ip": "10.0.0.1", "port": 0}],
        [{"ip": "10.0.0.1", "port": 1, "ready": "yes"}],
    ],
)
def test_static_errors(instances: Any) -> None:
    with pytest.raises(SpecError, match="instances"):
        parse_spec(with_provider("static", {"instances": instances}))


# --- discovery safety fields --------------------------------------------------------------


PAI = {"paiEas": {"endpoint": "http://eas.example", "serviceName": "m"}}


def test_safety_defaults() -> None:
    parsed = parse_spec({"provider": PAI})
    assert parsed.allowed_cidrs == DEFAULT_ALLOWED_CIDRS
    assert (parsed.max_shrink_percent, parsed.shrink_confirmations) == (50, 3)
    assert parsed.calls_per_minute is None


def test_safety_fields_set() -> None:
    parsed = parse_spec(
        {
            "provider": PAI,
            "allowedCIDRs": ["10.1.0.0/16", "2001:db8::/32"],
            "maxShrinkPercent": 0,
            "shrinkConfirmations": 1,
            "rateBudget": {"callsPerMinute": 6000},
        }
    )
    assert parsed.allowed_cidrs == (
        ipaddress.ip_network("10.1.0.0/16"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert (parsed.max_shrink_percent, parsed.shrink_confirmations) == (0, 1)
    assert parsed.calls_per_minute == 6000


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"allowedCIDRs": []}, "allowedCIDRs"),
        ({"allowedCIDRs": ["10.1.2.3/8"]}, "host bits"),
        ({"allowedCIDRs": ["10.0.0.1"]}, "allowedCIDRs"),
        ({"allowedCIDRs": ["everything"]}, "allowedCIDRs"),
        ({"maxShrinkPercent": 101}, "maxShrinkPercent"),
        ({"maxShrinkPercent": True}, "maxShrinkPercent"),
        ({"shrinkConfirmations": 0}, "shrinkConfirmations"),
        ({"rateBudget": {"callsPerMinute": 0}}, "callsPerMinute"),
        ({"rateBudget": "fast"}, "rateBudget"),
    ],
)
def test_safety_field_errors(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError, match=needle):
        parse_spec({"provider": PAI, **fields})


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(SpecError, match="httpJson, modelArts, paiEas, static"):
        parse_spec({"provider": {"consul": {}}})
