"""The DirectService CRD: identity, structural basics, examples, and schema-level rejections.

CEL rules (x-kubernetes-validations) cannot be evaluated here; these tests only check that
they are present and cheap to estimate. The integration tier runs them on a real API server.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from crd_schema import (
    CRD,
    GROUP,
    KIND,
    SCHEMA,
    VERSION,
    apply_defaults,
    cel_rules,
    directservice,
    errors,
    example_directservices,
    to_json_schema,
    version_entry,
    walk,
)

pytestmark = pytest.mark.unit

DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DEFAULT_PATH = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/{serviceName}"


def minimal(**spec: Any) -> dict[str, Any]:
    """A valid DirectService; keyword arguments replace spec fields."""
    pai_eas = {
        "endpoint": "http://pai-eas-vpc.cn-shanghai.aliyuncs.com",
        "serviceName": "mnist_saved_model_example",
    }
    return directservice("mnist", {"provider": {"paiEas": pai_eas}, **spec})


def with_pai(**fields: Any) -> dict[str, Any]:
    """A valid DirectService with spec.provider.paiEas fields replaced."""
    obj = minimal()
    obj["spec"]["provider"]["paiEas"].update(fields)
    return obj


def sub_schema(path: str) -> dict[str, Any]:
    for found, schema in walk(SCHEMA):
        if found == path:
            return dict(schema)
    raise KeyError(path)


# --- identity and served shape ------------------------------------------------------------


def test_crd_identity() -> None:
    assert CRD["apiVersion"] == "apiextensions.k8s.io/v1"
    assert CRD["kind"] == "CustomResourceDefinition"
    assert CRD["metadata"]["name"] == f"directservices.{GROUP}"
    spec = CRD["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    names = spec["names"]
    assert names["kind"] == KIND
    assert names["plural"] == "directservices"
    assert names["singular"] == "directservice"
    assert names["shortNames"] == ["dsvc"]
    assert "all" not in names.get("categories", [])


def test_single_served_storage_version() -> None:
    versions = CRD["spec"]["versions"]
    assert [v["name"] for v in versions] == [VERSION]
    entry = version_entry(CRD)
    assert entry["served"] is True
    assert entry["storage"] is True


def test_status_subresource_only() -> None:
    assert version_entry(CRD)["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in version_entry(CRD)["additionalPrinterColumns"]}
    expected = {
        "Provider": (".status.provider", "string"),
        "Ready": (".status.readyEndpoints", "integer"),
        "Total": (".status.totalEndpoints", "integer"),
        "Last-Sync": (".status.lastSuccessfulSync", "date"),
        "Age": (".metadata.creationTimestamp", "date"),
    }
    for name, (json_path, kind) in expected.items():
        assert columns[name]["jsonPath"] == json_path, name
        assert columns[name]["type"] == kind, name
        assert columns[name].get("priority", 0) == 0, name
    # Every column points at a field the schema declares.
    for column in columns.values():
        path = column["jsonPath"].split("[")[0]
        if not path.startswith(".metadata"):
            sub_schema(path)


# --- structural schema basics -------------------------------------------------------------


def test_schema_is_a_valid_draft4_schema() -> None:
    jsonschema.Draft4Validator.check_schema(to_json_schema(SCHEMA, strict=True))


def test_every_node_has_a_type_and_nothing_preserves_unknown_fields() -> None:
    for path, schema in walk(SCHEMA):
        assert "type" in schema, f"{path or '<root>'} has no type"
        assert "x-kubernetes-preserve-unknown-fields" not in schema, path
        assert "additionalProperties" not in schema, path


def test_every_spec_and_status_field_is_described() -> None:
    missing = [
        path
        for path, schema in walk(SCHEMA)
        if path.startswith((".spec", ".status")) and len(schema.get("description", "")) < 10
    ]
    assert not missing, f"fields without a description: {missing}"
    assert "headless Service" in SCHEMA["description"]
    assert "EndpointSlice" in SCHEMA["description"]


def test_required_fields() -> None:
    assert SCHEMA["required"] == ["spec"]
    assert sub_schema(".spec")["required"] == ["provider"]
    assert sorted(sub_schema(".spec.provider.paiEas")["required"]) == ["endpoint", "serviceName"]


def test_every_default_is_valid_for_its_own_field() -> None:
    defaults = [(path, s) for path, s in walk(SCHEMA) if "default" in s]
    assert {path for path, _ in defaults} == {
        ".spec.provider.paiEas.path",
        ".spec.pollInterval",
        ".spec.timeouts",
        ".spec.timeouts.connect",
        ".spec.timeouts.read",
        ".spec.port",
        ".spec.port.name",
        ".spec.maxEndpointsPerSlice",
        ".spec.allowedCIDRs",
        ".spec.maxShrinkPercent",
        ".spec.shrinkConfirmations",
        ".spec.healthCheck.type",
        ".spec.healthCheck.path",
        ".spec.healthCheck.method",
        ".spec.healthCheck.expectedStatus.min",
        ".spec.healthCheck.expectedStatus.max",
        ".spec.healthCheck.interval",
        ".spec.healthCheck.timeout",
        ".spec.healthCheck.unhealthyThreshold",
        ".spec.healthCheck.healthyThreshold",
        ".spec.healthCheck.panicThresholdPercent",
        ".spec.drainSeconds",
    }
    for path, schema in defaults:
        json_schema = to_json_schema(schema, strict=True)
        value = apply_defaults(schema, schema["default"])
        problems = list(jsonschema.Draft4Validator(json_schema).iter_errors(value))
        assert not problems, f"default of {path} is invalid: {problems[0].message}"


def test_defaults_fill_a_minimal_spec() -> None:
    defaulted = apply_defaults(SCHEMA, minimal())
    assert defaulted["spec"] == {
        "provider": {
            "paiEas": {
                "endpoint": "http://pai-eas-vpc.cn-shanghai.aliyuncs.com",
                "serviceName": "mnist_saved_model_example",
                "path": DEFAULT_PATH,
            }
        },
        "pollInterval": "5s",
        "timeouts": {"connect": "2s", "read": "5s"},
        "port": {"name": "http"},
        "maxEndpointsPerSlice": 100,
        "allowedCIDRs": [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "fc00::/7",
        ],
        "maxShrinkPercent": 50,
        "shrinkConfirmations": 3,
        "drainSeconds": 10,
    }
    assert "healthCheck" not in defaulted["spec"]  # health checks are off by default
    assert "internal" not in defaulted["spec"]["provider"]["paiEas"]
    assert "rateBudget" not in defaulted["spec"]  # its default depends on the provider
    assert "status" not in defaulted


def test_defaults_do_not_override_given_values() -> None:
    obj = minimal(port={"name": "grpc", "port": 50000}, timeouts={"read": "30s"})
    spec = apply_defaults(SCHEMA, obj)["spec"]
    assert spec["port"] == {"name": "grpc", "port": 50000}
    assert spec["timeouts"] == {"connect": "2s", "read": "30s"}


def test_conditions_are_a_map_list_keyed_by_type() -> None:
    conditions = sub_schema(".status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert "type" in item["required"]
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


def test_status_accepts_what_the_operator_writes() -> None:
    obj = minimal()
    obj["status"] = {
        "provider": "paiEas",
        "readyEndpoints": 3,
        "totalEndpoints": 4,
        "droppedEntries": 1,
        "effectivePollInterval": "10s",
        "lastSuccessfulSync": "2026-01-02T03:04:05Z",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "DiscoveryHealthy",
                "status": "False",
                "reason": "AllWeightsZero",
                "message": "all 3 instances have weight 0",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
                "observedGeneration": 2,
            },
            {"type": "Ready", "status": "True", "reason": "EndpointsPublished", "message": ""},
        ],
    }
    assert errors(obj) == []
    obj["status"]["conditions"][1]["status"] = "Yes"
    assert errors(obj)


# --- examples -----------------------------------------------------------------------------


EXAMPLES = example_directservices()


def test_the_pai_eas_example_is_there() -> None:
    assert any(name.startswith("01-pai-eas.yaml") for name, _ in EXAMPLES)


@pytest.mark.parametrize(("name", "obj"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_is_valid(name: str, obj: dict[str, Any]) -> None:
    assert obj["apiVersion"] == f"{GROUP}/{VERSION}"
    assert errors(obj) == [], name
    # The root CEL rule: the name must be usable as a Service name.
    metadata_name = obj["metadata"]["name"]
    assert DNS_1035_LABEL.fullmatch(metadata_name), metadata_name
    assert len(metadata_name) <= 63


# --- accepted and rejected specs ----------------------------------------------------------


VALID = {
    "minimal": minimal(),
    "service group member": with_pai(serviceName="group.service"),
    "uid endpoint": with_pai(endpoint="http://1234567890.vpc.cn-shanghai.pai-eas.aliyuncs.com"),
    "https endpoint with port and prefix": with_pai(endpoint="https://eas.example:8443/prefix/"),
    "new sdk path": with_pai(path="/api/v1/servicediscovery/upstreams/{serviceName}"),
    "internal false": with_pai(internal=False),
    "poll 1m30s": minimal(pollInterval="1m30s"),
    "poll 1.5s": minimal(pollInterval="1.5s"),
    "timeouts in ms": minimal(timeouts={"connect": "250ms", "read": "1500ms"}),
    "grpc-web port": minimal(port={"name": "grpc-web", "appProtocol": "kubernetes.io/h2c"}),
    "digits then letters port name": minimal(port={"name": "8080-http"}),
    "shown port": minimal(port={"port": 8080}),
    "one endpoint per slice": minimal(maxEndpointsPerSlice=1),
    "api limit per slice": minimal(maxEndpointsPerSlice=1000),
}


@pytest.mark.parametrize("obj", list(VALID.values()), ids=list(VALID))
def test_valid_spec_is_accepted(obj: dict[str, Any]) -> None:
    assert errors(obj) == []


def _two_providers() -> dict[str, Any]:
    obj = minimal()
    obj["spec"]["provider"]["modelArts"] = {"endpoint": "https://modelarts.example"}
    return obj


def _no_spec() -> dict[str, Any]:
    obj = minimal()
    del obj["spec"]
    return obj


def _no_provider() -> dict[str, Any]:
    obj = minimal()
    del obj["spec"]["provider"]
    return obj


def _without_pai(field: str) -> dict[str, Any]:
    obj = minimal()
    del obj["spec"]["provider"]["paiEas"][field]
    return obj


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    # name: (object, path of the expected error)
    "no spec": (_no_spec(), ""),
    "no provider": (_no_provider(), "spec"),
    "empty provider": (minimal(provider={}), "spec/provider"),
    "two providers": (_two_providers(), "spec/provider"),
    "unknown provider field": (with_pai(region="cn-shanghai"), "spec/provider/paiEas"),
    "no endpoint": (_without_pai("endpoint"), "spec/provider/paiEas"),
    "no serviceName": (_without_pai("serviceName"), "spec/provider/paiEas"),
    "endpoint without scheme": (
        with_pai(endpoint="pai-eas-vpc.cn-shanghai.aliyuncs.com"),
        "spec/provider/paiEas/endpoint",
    ),
    "endpoint ftp": (with_pai(endpoint="ftp://host"), "spec/provider/paiEas/endpoint"),
    "endpoint with query": (with_pai(endpoint="http://host/?a=b"), "spec/provider/paiEas/endpoint"),
    "endpoint with space": (with_pai(endpoint="http://ho st"), "spec/provider/paiEas/endpoint"),
    "endpoint without host": (with_pai(endpoint="http:///x"), "spec/provider/paiEas/endpoint"),
    "empty serviceName": (with_pai(serviceName=""), "spec/provider/paiEas/serviceName"),
    "serviceName with slash": (with_pai(serviceName="a/b"), "spec/provider/paiEas/serviceName"),
    "relative path": (with_pai(path="exported/x"), "spec/provider/paiEas/path"),
    "path with query": (with_pai(path="/x?internal=true"), "spec/provider/paiEas/path"),
    "internal as string": (with_pai(internal="true"), "spec/provider/paiEas/internal"),
    "poll without unit": (minimal(pollInterval="5"), "spec/pollInterval"),
    "poll with space": (minimal(pollInterval="5 s"), "spec/pollInterval"),
    "negative poll": (minimal(pollInterval="-5s"), "spec/pollInterval"),
    "poll as number": (minimal(pollInterval=5), "spec/pollInterval"),
    "connect in days": (minimal(timeouts={"connect": "1d"}), "spec/timeouts/connect"),
    "numeric port name": (minimal(port={"name": "8080"}), "spec/port/name"),
    "double hyphen port name": (minimal(port={"name": "my--port"}), "spec/port/name"),
    "leading hyphen port name": (minimal(port={"name": "-http"}), "spec/port/name"),
    "trailing hyphen port name": (minimal(port={"name": "http-"}), "spec/port/name"),
    "upper-case port name": (minimal(port={"name": "HTTP"}), "spec/port/name"),
    "long port name": (minimal(port={"name": "a-very-long-name1"}), "spec/port/name"),
    "empty port name": (minimal(port={"name": ""}), "spec/port/name"),
    "appProtocol with space": (minimal(port={"appProtocol": "h 2"}), "spec/port/appProtocol"),
    "appProtocol two slashes": (minimal(port={"appProtocol": "a/b/c"}), "spec/port/appProtocol"),
    "port 0": (minimal(port={"port": 0}), "spec/port/port"),
    "port 65536": (minimal(port={"port": 65536}), "spec/port/port"),
    "maxEndpointsPerSlice 5000": (minimal(maxEndpointsPerSlice=5000), "spec/maxEndpointsPerSlice"),
    "maxEndpointsPerSlice 0": (minimal(maxEndpointsPerSlice=0), "spec/maxEndpointsPerSlice"),
    "unknown spec field": (minimal(selector={"app": "x"}), "spec"),
}


@pytest.mark.parametrize(("obj", "where"), list(INVALID.values()), ids=list(INVALID))
def test_invalid_spec_is_rejected(obj: dict[str, Any], where: str) -> None:
    found = errors(obj)
    assert found, "expected a schema violation"
    assert any(e.split(": ", 1)[0] == where for e in found), found


# --- patterns agree with the Kubernetes rules they stand for -------------------------------


def _is_iana_port_name(name: str) -> bool:
    """Kubernetes' IsValidPortName, restated."""
    return (
        0 < len(name) <= 15
        and re.fullmatch(r"[-a-z0-9]+", name) is not None
        and re.search(r"[a-z]", name) is not None
        and "--" not in name
        and not name.startswith("-")
        and not name.endswith("-")
    )


def test_port_name_pattern_is_the_iana_rule() -> None:
    name_schema = sub_schema(".spec.port.name")
    pattern = re.compile(name_schema["pattern"])
    for length in range(1, 7):
        for chars in itertools.product("a1-", repeat=length):
            name = "".join(chars)
            assert (pattern.search(name) is not None) == _is_iana_port_name(name), name
    assert name_schema["maxLength"] == 15


def _is_qualified_name(value: str) -> bool:
    """Kubernetes' IsQualifiedName (used for appProtocol), restated."""
    parts = value.split("/")
    if len(parts) > 2:
        return False
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        label = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
        if not prefix or len(prefix) > 253:
            return False
        if not re.fullmatch(rf"{label}(\.{label})*", prefix):
            return False
    return 0 < len(name) <= 63 and bool(
        re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", name)
    )


@pytest.mark.parametrize(
    "value",
    [
        "http",
        "https",
        "h2c",
        "kubernetes.io/h2c",
        "kubernetes.io/ws",
        "example.com/My_Proto.v2",
        "a" * 63,
        "a" * 64,
        "x/" + "a" * 63,
        "x/" + "a" * 64,
        "-http",
        "http-",
        "_x",
        "Example.com/x",
        "/x",
        "x/",
        "a/b/c",
        "h 2",
    ],
)
def test_app_protocol_pattern_is_the_qualified_name_rule(value: str) -> None:
    schema = sub_schema(".spec.port.appProtocol")
    # The prefix length (at most 253) is the CEL rule's job; values here stay below it.
    accepted = len(value) <= schema["maxLength"] and re.search(schema["pattern"], value)
    assert bool(accepted) == _is_qualified_name(value)


# --- CEL rules ----------------------------------------------------------------------------


def test_cel_rules_are_present() -> None:
    rules = cel_rules(SCHEMA)
    assert set(rules) == {
        "",
        ".spec",
        ".spec.provider",
        ".spec.provider.modelArts",
        ".spec.provider.httpJson.headers[]",
        ".spec.pollInterval",
        ".spec.timeouts.connect",
        ".spec.timeouts.read",
        ".spec.port.appProtocol",
        ".spec.allowedCIDRs[]",
        ".spec.healthCheck.expectedStatus",
        ".spec.healthCheck.interval",
        ".spec.healthCheck.timeout",
    }
    for path, entries in rules.items():
        for entry in entries:
            assert entry["rule"].strip(), path
            assert len(entry.get("message", "")) > 10, f"{path}: rule without a message"

    (root,) = rules[""]
    assert "self.metadata.name" in root["rule"]
    assert "^[a-z]([-a-z0-9]*[a-z0-9])?$" in root["rule"]
    assert "63" in root["rule"]
    assert root["fieldPath"] == ".metadata.name"

    (provider,) = rules[".spec.provider"]
    for kind in ("paiEas", "modelArts", "httpJson", "static"):
        assert f"(has(self.{kind}) ? 1 : 0)" in provider["rule"], kind
        assert kind in provider["message"], kind
    assert set(sub_schema(".spec.provider")["properties"]) == {
        "paiEas",
        "modelArts",
        "httpJson",
        "static",
    }

    bounds = {
        ".spec.pollInterval": ("1s", "1h"),
        ".spec.timeouts.connect": ("100ms", "60s"),
        ".spec.timeouts.read": ("100ms", "5m"),
        ".spec.healthCheck.interval": ("1s", "1h"),
        ".spec.healthCheck.timeout": ("100ms", "60s"),
    }
    for path, (low, high) in bounds.items():
        (entry,) = rules[path]
        rule = " ".join(entry["rule"].split())
        # The rule skips values the pattern already rejects, so they get one clear error
        # instead of a CEL type-conversion error as well.
        guard = re.fullmatch(r"!self\.matches\('([^']+)'\) \|\| \((.+)\)", rule)
        assert guard, f"{path}: {rule}"
        assert guard.group(1).replace("[.]", r"\.") == sub_schema(path)["pattern"], path
        assert f"duration(self) >= duration('{low}')" in rule, path
        assert f"duration(self) <= duration('{high}')" in rule, path
        assert low in entry["message"], path
        assert high in entry["message"], path


def test_strings_used_by_cel_rules_are_bounded() -> None:
    """The API server estimates a rule's cost from maxLength; unbounded strings cost most."""
    for path in cel_rules(SCHEMA):
        schema = sub_schema(path)
        if schema["type"] == "string":
            assert schema.get("maxLength", 0) <= 1024, path
    assert SCHEMA["properties"]["metadata"]["properties"]["name"]["maxLength"] == 63


def test_duration_defaults_match_their_pattern() -> None:
    for path in (".spec.pollInterval", ".spec.timeouts.connect", ".spec.timeouts.read"):
        schema = sub_schema(path)
        assert re.search(schema["pattern"], schema["default"]), path


def test_errors_helper_reports_paths() -> None:
    obj = copy.deepcopy(minimal(maxEndpointsPerSlice=5000))
    assert errors(obj) == ["spec/maxEndpointsPerSlice: 5000 is greater than the maximum of 1000"]
