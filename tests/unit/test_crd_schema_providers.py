"""The CRD's modelArts, httpJson and static providers and the discovery-safety fields.

The schema half is checked here with jsonschema; the CEL rules are only checked for presence
and wording (the integration tier evaluates them on a real kube-apiserver).
"""

from __future__ import annotations

from typing import Any

import pytest

from crd_schema import (
    SCHEMA,
    apply_defaults,
    cel_rules,
    directservice,
    errors,
    example_directservices,
)
from directservice.api.spec import SpecError
from directservice.discovery import parse_spec

pytestmark = pytest.mark.unit

MODELARTS = {
    "endpoint": "https://modelarts.cn-north-4.myhuaweicloud.com",
    "iamEndpoint": "https://iam.cn-north-4.myhuaweicloud.com",
    "projectId": "0123abcd",
    "serviceId": "5f7a2c1e-8b3d",
    "credentialsSecretRef": {"name": "modelarts-iam"},
}
HTTP_JSON = {"url": "http://registry.example:8500/v1/x?zone=a"}
STATIC = {"instances": [{"ip": "10.0.0.1", "port": 80}]}


def obj(provider: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return directservice("x", {"provider": provider, **spec})


VALID = {
    "modelArts password": obj({"modelArts": MODELARTS}),
    "modelArts token": obj(
        {"modelArts": {**MODELARTS, "credentialsSecretRef": {"name": "t", "tokenKey": "tok"}}}
    ),
    "modelArts access key": obj({"modelArts": {**MODELARTS, "authMethod": "AccessKey"}}),
    "modelArts fields": obj(
        {
            "modelArts": {
                **MODELARTS,
                "fields": {"list": "data.endpoints", "ip": "host", "scheme": "schema"},
            }
        }
    ),
    "httpJson minimal": obj({"httpJson": HTTP_JSON}),
    "httpJson full": obj(
        {
            "httpJson": {
                **HTTP_JSON,
                "headers": [
                    {
                        "name": "Authorization",
                        "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}},
                    },
                    {"name": "X-A", "value": "b"},
                ],
                "listPath": "data.hosts.0.items",
                "fields": {"ip": "addr", "port": "p", "weight": "", "ready": "up", "hostname": "n"},
                "successStatuses": [200, 203],
            }
        }
    ),
    "static": obj(
        {
            "static": {
                "instances": [
                    {"ip": "fd00::1", "port": 1, "weight": 0.5, "ready": False, "hostname": "a"}
                ]
            }
        }
    ),
    "safety fields": obj(
        {"static": STATIC},
        allowedCIDRs=["0.0.0.0/0", "::/0"],
        maxShrinkPercent=100,
        shrinkConfirmations=1,
        rateBudget={"callsPerMinute": 60000},
    ),
}


@pytest.mark.parametrize("o", list(VALID.values()), ids=list(VALID))
def test_valid_objects_pass_the_schema_and_the_parser(o: dict[str, Any]) -> None:
    assert errors(o) == []
    parse_spec(apply_defaults(SCHEMA, o)["spec"])  # the operator accepts what the CRD does


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "modelArts without serviceId": (
        obj({"modelArts": {k: v for k, v in MODELARTS.items() if k != "serviceId"}}),
        "spec/provider/modelArts",
    ),
    "modelArts unknown auth": (
        obj({"modelArts": {**MODELARTS, "authMethod": "Magic"}}),
        "spec/provider/modelArts/authMethod",
    ),
    "modelArts project with slash": (
        obj({"modelArts": {**MODELARTS, "projectId": "a/b"}}),
        "spec/provider/modelArts/projectId",
    ),
    "modelArts endpoint with query": (
        obj({"modelArts": {**MODELARTS, "endpoint": "https://m/?a=b"}}),
        "spec/provider/modelArts/endpoint",
    ),
    "modelArts bad secret name": (
        obj({"modelArts": {**MODELARTS, "credentialsSecretRef": {"name": "Bad_Name"}}}),
        "spec/provider/modelArts/credentialsSecretRef/name",
    ),
    "modelArts unknown field path": (
        obj({"modelArts": {**MODELARTS, "fields": {"colour": "x"}}}),
        "spec/provider/modelArts/fields",
    ),
    "modelArts bad path": (
        obj({"modelArts": {**MODELARTS, "fields": {"ip": "a..b"}}}),
        "spec/provider/modelArts/fields/ip",
    ),
    "httpJson without url": (obj({"httpJson": {}}), "spec/provider/httpJson"),
    "httpJson ftp": (obj({"httpJson": {"url": "ftp://x"}}), "spec/provider/httpJson/url"),
    "httpJson header value with newline": (
        obj({"httpJson": {**HTTP_JSON, "headers": [{"name": "A", "value": "x\ny"}]}}),
        "spec/provider/httpJson/headers/0/value",
    ),
    "httpJson header name with space": (
        obj({"httpJson": {**HTTP_JSON, "headers": [{"name": "A B", "value": "x"}]}}),
        "spec/provider/httpJson/headers/0/name",
    ),
    "httpJson 302 success": (
        obj({"httpJson": {**HTTP_JSON, "successStatuses": [302]}}),
        "spec/provider/httpJson/successStatuses/0",
    ),
    "httpJson list in fields": (
        obj({"httpJson": {**HTTP_JSON, "fields": {"list": "x"}}}),
        "spec/provider/httpJson/fields",
    ),
    "static empty": (obj({"static": {"instances": []}}), "spec/provider/static/instances"),
    "static port 0": (
        obj({"static": {"instances": [{"ip": "10.0.0.1", "port": 0}]}}),
        "spec/provider/static/instances/0/port",
    ),
    "static negative weight": (
        obj({"static": {"instances": [{"ip": "10.0.0.1", "port": 1, "weight": -1}]}}),
        "spec/provider/static/instances/0/weight",
    ),
    "static bad hostname": (
        obj({"static": {"instances": [{"ip": "10.0.0.1", "port": 1, "hostname": "A_b"}]}}),
        "spec/provider/static/instances/0/hostname",
    ),
    "empty allowedCIDRs": (obj({"static": STATIC}, allowedCIDRs=[]), "spec/allowedCIDRs"),
    "maxShrinkPercent 101": (
        obj({"static": STATIC}, maxShrinkPercent=101),
        "spec/maxShrinkPercent",
    ),
    "shrinkConfirmations 0": (
        obj({"static": STATIC}, shrinkConfirmations=0),
        "spec/shrinkConfirmations",
    ),
    "callsPerMinute 0": (
        obj({"static": STATIC}, rateBudget={"callsPerMinute": 0}),
        "spec/rateBudget/callsPerMinute",
    ),
    "unknown rateBudget field": (
        obj({"static": STATIC}, rateBudget={"burst": 3}),
        "spec/rateBudget",
    ),
}


@pytest.mark.parametrize(("o", "where"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_objects_are_rejected(o: dict[str, Any], where: str) -> None:
    found = errors(o)
    assert any(e.split(": ", 1)[0] == where for e in found), found


# Left to other layers on purpose: static entries are checked like discovered ones (and
# dropped with a reason), and the parser, like the API server, ignores unknown fields.
NOT_THE_PARSERS_JOB = {"static negative weight", "static bad hostname", "unknown rateBudget field"}
PARSER_CASES = {k: v for k, v in INVALID.items() if k not in NOT_THE_PARSERS_JOB}


@pytest.mark.parametrize("o", [o for o, _ in PARSER_CASES.values()], ids=list(PARSER_CASES))
def test_the_parser_rejects_what_the_schema_rejects(o: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_spec(o["spec"])


def test_cel_rules_for_the_new_fields() -> None:
    rules = cel_rules(SCHEMA)
    modelarts = " ".join(r["rule"] for r in rules[".spec.provider.modelArts"])
    for needle in ("has(self.iamEndpoint)", "self.authMethod != 'Password'", "tokenKey"):
        assert needle in modelarts
    (budget,) = rules[".spec"]
    assert "<= 2000" in budget["rule"] and budget["fieldPath"] == ".rateBudget.callsPerMinute"
    (cidr,) = rules[".spec.allowedCIDRs[]"]
    assert "isCIDR(self)" in cidr["rule"] and "masked()" in cidr["rule"]
    (header,) = rules[".spec.provider.httpJson.headers[]"]
    assert header["rule"] == "has(self.value) != has(self.valueFrom)"


def test_each_provider_has_an_example() -> None:
    kinds = {next(iter(o["spec"]["provider"])) for _, o in example_directservices()}
    assert kinds == {"paiEas", "modelArts", "httpJson", "static"}


def test_examples_parse() -> None:
    for _, o in example_directservices():
        parse_spec(apply_defaults(SCHEMA, o)["spec"])
