"""The kubectl install path (manifests/), the image recipe and the alerting example.

manifests/ is applied to a real kube-apiserver: first as a server-side dry run, then for
real, in a control plane of its own (it creates cluster-scoped objects the session's
control plane should not carry). Its objects must say the same as the Helm chart rendered
with defaults, so the two install paths cannot drift apart. kubectl explain and the printer
columns are checked on the session control plane, where the CRD comes from manifests/crds.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from clusterhelpers import REPO, eventually, get_json
from devenv.controlplane import ControlPlane
from devenv.tools import Tools

pytestmark = pytest.mark.integration

MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "directservice-operator"
CRD_FILE = MANIFESTS / "crds" / "directservice.io_directservices.yaml"
SYSTEM_NS = "directservice-system"
NAME = "directservice-operator"
RULES_FILE = REPO / "examples" / "monitoring" / "prometheus-rules.yaml"


def _docs(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


@pytest.fixture(scope="module")
def own_cluster(tools: Tools) -> Iterator[ControlPlane]:
    """A control plane without any CRD: manifests/ has to bring its own."""
    with ControlPlane(tools, crd_dir=None) as cp:
        yield cp


@pytest.fixture
def empty_cluster(tools: Tools) -> Iterator[ControlPlane]:
    """A control plane of the test's own, with nothing installed."""
    with ControlPlane(tools, crd_dir=None) as cp:
        yield cp


@pytest.fixture(scope="module")
def built(own_cluster: ControlPlane) -> list[dict[str, Any]]:
    """`kubectl kustomize manifests/`, with the kustomize built into kubectl."""
    return _docs(own_cluster.kubectl("kustomize", str(MANIFESTS)).stdout)


@pytest.fixture(scope="module")
def chart_defaults(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The chart rendered with its defaults, installed as `directservice-operator`."""
    home = tmp_path_factory.mktemp("helm")
    env = {f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}
    argv = [str(tools.helm), "template", NAME, str(CHART), "--namespace", SYSTEM_NS]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
    return _docs(result.stdout)


# -- kustomization ------------------------------------------------------------------------


def test_kustomization_lists_one_file_per_concern(built: list[dict[str, Any]]) -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [
        "crds/directservice.io_directservices.yaml",
        "namespace.yaml",
        "serviceaccount.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "metrics-service.yaml",
    ]
    kinds = sorted(doc["kind"] for doc in built)
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
        ]
    )
    namespaced = [
        doc for doc in built if doc["kind"] in ("ServiceAccount", "Deployment", "Service")
    ]
    assert {doc["metadata"]["namespace"] for doc in namespaced} == {SYSTEM_NS}


def test_kustomization_carries_the_crd_unchanged(built: list[dict[str, Any]]) -> None:
    crds = _by_kind(built)["CustomResourceDefinition"]
    assert crds == [yaml.safe_load(CRD_FILE.read_text())]


def test_server_side_dry_run_accepts_everything(empty_cluster: ControlPlane) -> None:
    cp = empty_cluster
    # A dry-run Namespace is not stored, so the objects inside it would be refused with
    # NotFound: the namespace exists beforehand, as on a cluster that already has it.
    cp.kubectl("create", "namespace", SYSTEM_NS)
    result = cp.kubectl(
        "apply", "--server-side", "--dry-run=server", "-k", str(MANIFESTS), check=False
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 7
    assert all(line.endswith("serverside-applied (server dry run)") for line in lines), lines
    assert "Warning" not in result.stderr, result.stderr
    # Nothing was stored.
    assert cp.kubectl("get", "deployment", NAME, "-n", SYSTEM_NS, check=False).returncode != 0
    assert cp.kubectl("get", "crd", "directservices.directservice.io", check=False).returncode != 0


def test_apply_installs_and_is_idempotent(own_cluster: ControlPlane) -> None:
    cp = own_cluster
    first = cp.kubectl("apply", "--server-side", "-k", str(MANIFESTS), check=False)
    assert first.returncode == 0, first.stderr
    # The namespace enforces Pod Security "restricted" and warns about violations: the
    # operator's pod template raises none.
    assert "PodSecurity" not in first.stderr, first.stderr
    cp.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/directservices.directservice.io",
        "--timeout=30s",
    )
    deployment = get_json(cp, "deployment", NAME, "-n", SYSTEM_NS)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == NAME
    assert get_json(cp, "serviceaccount", NAME, "-n", SYSTEM_NS)["metadata"]["name"] == NAME
    binding = get_json(cp, "clusterrolebinding", NAME)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": SYSTEM_NS}]
    rv = deployment["metadata"]["resourceVersion"]
    again = cp.kubectl("apply", "--server-side", "-k", str(MANIFESTS), check=False)
    assert again.returncode == 0, again.stderr
    assert get_json(cp, "deployment", NAME, "-n", SYSTEM_NS)["metadata"]["resourceVersion"] == rv


def test_pod_security_warnings_would_show(own_cluster: ControlPlane) -> None:
    """The check above is meaningful: a privileged pod template in the same namespace warns."""
    cp = own_cluster
    cp.kubectl("apply", "--server-side", "-f", str(MANIFESTS / "namespace.yaml"))
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "psa-probe", "namespace": SYSTEM_NS},
        "spec": {
            "selector": {"matchLabels": {"app": "psa-probe"}},
            "template": {
                "metadata": {"labels": {"app": "psa-probe"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }
    result = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(bad))
    assert 'would violate PodSecurity "restricted:latest"' in result.stderr


# -- manifests/ and the chart say the same thing ------------------------------------------


def test_rbac_matches_the_chart_defaults(
    built: list[dict[str, Any]], chart_defaults: list[dict[str, Any]]
) -> None:
    ours = _by_kind(built)["ClusterRole"][0]["rules"]
    charts = _by_kind(chart_defaults)["ClusterRole"][0]["rules"]
    assert ours == charts


def test_pod_spec_matches_the_chart_defaults(
    built: list[dict[str, Any]], chart_defaults: list[dict[str, Any]]
) -> None:
    ours = _by_kind(built)["Deployment"][0]["spec"]
    charts = _by_kind(chart_defaults)["Deployment"][0]["spec"]
    assert ours["template"]["spec"] == charts["template"]["spec"]
    assert ours["selector"] == charts["selector"]
    assert ours["strategy"] == charts["strategy"] == {"type": "Recreate"}
    service = _by_kind(built)["Service"][0]
    chart_service = _by_kind(chart_defaults)["Service"][0]
    assert service["metadata"]["name"] == chart_service["metadata"]["name"]
    assert service["spec"] == chart_service["spec"]


# -- the CRD as kubectl shows it (session control plane) ----------------------------------


def _words(text: str) -> list[str]:
    return text.split()


def _explain(cp: ControlPlane, path: str) -> str:
    """`kubectl explain`, once the API server publishes the CRD's OpenAPI schema.

    Publishing trails the CRD's Established condition by a moment after start-up.
    """

    def attempt() -> str | None:
        result = cp.kubectl("explain", path, check=False)
        return result.stdout if result.returncode == 0 else None

    return eventually(f"kubectl explain {path}", attempt, 30)


def test_kubectl_explain_shows_the_field_descriptions(control_plane: ControlPlane) -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    provider = schema["properties"]["spec"]["properties"]["provider"]
    out = _explain(control_plane, "dsvc.spec.provider")
    assert "KIND:       DirectService" in out
    # kubectl re-wraps the text: compare word by word.
    assert " ".join(_words(provider["description"])) in " ".join(_words(out))
    for field in provider["properties"]:
        assert re.search(rf"^\s+{field}\s+<Object>", out, re.MULTILINE), field
    endpoint = provider["properties"]["paiEas"]["properties"]["endpoint"]
    out = _explain(control_plane, "dsvc.spec.provider.paiEas.endpoint")
    assert " ".join(_words(endpoint["description"])) in " ".join(_words(out))


@pytest.fixture
def quiet_cluster(tools: Tools) -> Iterator[ControlPlane]:
    """The CRD and no operator: the session's operator (when e2e tests started it) would
    reconcile a DirectService and overwrite the status this test writes."""
    with ControlPlane(tools) as cp:
        yield cp


def test_kubectl_get_shows_the_printer_columns(quiet_cluster: ControlPlane) -> None:
    cp = quiet_cluster
    namespace = "default"
    obj = yaml.safe_load((REPO / "examples" / "01-pai-eas.yaml").read_text())
    obj["metadata"]["namespace"] = namespace
    obj["spec"]["provider"]["paiEas"]["endpoint"] = "http://127.0.0.1:9"  # never polled here
    cp.kubectl("create", "-f", "-", input=json.dumps(obj))
    columns = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0][
        "additionalPrinterColumns"
    ]
    header = cp.kubectl("get", "dsvc", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME"] + [c["name"].upper() for c in columns if not c.get("priority")]
    assert header[:4] == ["NAME", "PROVIDER", "READY", "TOTAL"]
    wide = cp.kubectl("get", "dsvc", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert wide == ["NAME"] + [c["name"].upper() for c in columns]
    assert wide[:5] == ["NAME", "PROVIDER", "READY", "TOTAL", "HEALTHY"]
    # The columns read status; write one as the operator would (no operator runs here).
    status = {
        "status": {
            "provider": "paiEas",
            "readyEndpoints": 2,
            "totalEndpoints": 3,
            "lastSuccessfulSync": "2026-01-01T00:00:00Z",
            "conditions": [
                {
                    "type": "DiscoveryHealthy",
                    "status": "True",
                    "reason": "Discovered",
                    "message": "3 instances",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
        }
    }
    cp.kubectl(
        "patch", "dsvc", "mnist", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps(status),
    )  # fmt: skip
    row = cp.kubectl("get", "dsvc", "-n", namespace, "-o", "wide").stdout.splitlines()[1].split()
    assert row[:5] == ["mnist", "paiEas", "2", "3", "True"]


# -- Dockerfile ---------------------------------------------------------------------------
# No container engine runs here, so the image is never built by the tests; these checks
# read the recipe for the properties the chart relies on.


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def _stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    args: dict[str, str] = {}
    stages: list[list[tuple[str, str]]] = []
    for instruction, rest in _dockerfile():
        if instruction == "ARG" and not stages:
            key, _, value = rest.partition("=")
            args[key] = value
        elif instruction == "FROM":
            stages.append([(instruction, rest)])
        elif stages:
            stages[-1].append((instruction, rest))
    return args, stages


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    args, stages = _stages()
    assert len(stages) == 2
    bases = [stage[0][1].split()[0] for stage in stages]
    assert bases == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"], "both stages share one base"
    assert stages[0][0][1].split()[-1] == "builder"
    image = args["PYTHON_IMAGE"]
    # Pinned: a full patch version and a Debian release (plus, optionally, a digest); never
    # a floating tag such as 3.11-slim or latest.
    match = re.fullmatch(
        r"python:3\.11\.(\d+)-slim-(bookworm|trixie)(@sha256:[0-9a-f]{64})?", image
    )
    assert match, image


def test_dockerfile_final_stage_runs_non_root_without_build_tools() -> None:
    _, stages = _stages()
    builder, final = stages
    instructions = dict(final)
    assert instructions["USER"] == "65532:65532"  # numeric: runAsNonRoot can verify it
    assert json.loads(instructions["ENTRYPOINT"]) == ["directservice"]
    assert json.loads(instructions["CMD"]) == ["run"]
    final_text = " ".join(rest for _, rest in final)
    assert "apt-get" not in final_text and "gcc" not in final_text
    assert "COPY" not in instructions, "the final stage copies no source, only builder wheels"
    assert "--no-index" in final_text and "from=builder" in final_text
    assert "pip uninstall --yes pip" in final_text
    # The last USER wins and nothing after it switches back to root.
    users = [rest for instruction, rest in final if instruction == "USER"]
    assert users == ["65532:65532"]
    assert any("pip wheel" in rest for instruction, rest in builder if instruction == "RUN")


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    # Everything the builder COPYs is let through.
    _, stages = _stages()
    copied = [rest.split()[:-1] for instruction, rest in stages[0] if instruction == "COPY"]
    for sources in copied:
        for source in sources:
            assert f"!{source}" in lines or f"!{source.rstrip('/')}/" in lines, source


# -- PrometheusRule example ---------------------------------------------------------------

DURATION = (
    r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"
)
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

# The parts of prometheus-operator's PrometheusRule (monitoring.coreos.com/v1) that the
# example uses, with the constraints Prometheus puts on a rule file. Written for this test
# from the documented API; unknown fields are refused, as Prometheus refuses them.
PROMETHEUS_RULE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": DURATION},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": LABEL_NAME},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": DURATION},
                                        "labels": {
                                            "type": "object",
                                            "propertyNames": {"pattern": LABEL_NAME},
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "propertyNames": {"pattern": LABEL_NAME},
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    },
}


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["spec"]["groups"] for rule in group["rules"]]


def test_prometheus_rules_match_the_schema() -> None:
    doc = yaml.safe_load(RULES_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(PROMETHEUS_RULE_SCHEMA)
    jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA).validate(doc)
    names = [group["name"] for group in doc["spec"]["groups"]]
    assert len(names) == len(set(names)), "group names must be unique"


def test_prometheus_schema_refuses_typos() -> None:
    """The schema is strict enough to matter: a misspelt key or a bad duration fails."""
    validator = jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA)
    doc = yaml.safe_load(RULES_FILE.read_text())
    doc["spec"]["groups"][0]["rules"][0]["fro"] = doc["spec"]["groups"][0]["rules"][0].pop("for")
    assert not validator.is_valid(doc)
    doc = yaml.safe_load(RULES_FILE.read_text())
    doc["spec"]["groups"][0]["rules"][0]["for"] = "5 minutes"
    assert not validator.is_valid(doc)


def test_prometheus_rules_alert_on_staleness_and_no_ready_endpoints() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    stale = rules["DirectServiceDiscoveryStale"]["expr"]
    assert "directservice_seconds_since_last_success" in stale
    threshold = re.search(r">\s*(\d+)\s*\*\s*60\s*$", stale)
    assert threshold and int(threshold.group(1)) >= 1, stale  # N minutes, written as N * 60
    empty = rules["DirectServiceNoReadyEndpoints"]["expr"]
    assert re.search(r"directservice_ready_endpoints\)?\s*==\s*0\s*$", empty), empty
    for rule in rules.values():
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description"} <= set(rule["annotations"])
        assert "by (namespace, name)" in rule["expr"], "one alert per DirectService"


def test_prometheus_rules_use_metrics_the_operator_exports() -> None:
    from directservice.obs.metrics import REGISTRY

    exported: set[str] = set()
    for family in REGISTRY.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    labels = {
        family.name: {key for sample in family.samples for key in sample.labels}
        for family in REGISTRY.collect()
    }
    for rule in _rules():
        for metric in re.findall(r"\bdirectservice_[a-z_]+\b", rule["expr"]):
            assert metric in exported, f"{rule['alert']} uses {metric}, which is not exported"
            # `by (namespace, name)` needs those labels on the series (when any exist yet).
            if labels.get(metric):
                assert {"namespace", "name"} <= labels[metric], metric


def test_dockerfile_exposes_the_ports_the_chart_probes(
    chart_defaults: list[dict[str, Any]],
) -> None:
    container = _by_kind(chart_defaults)["Deployment"][0]["spec"]["template"]["spec"]["containers"][
        0
    ]
    ports = {port["containerPort"] for port in container["ports"]}
    exposed = {
        int(p)
        for instruction, rest in _dockerfile()
        if instruction == "EXPOSE"
        for p in rest.split()
    }
    assert ports == exposed


def test_promtool_unit_test_covers_every_alert() -> None:
    """examples/monitoring/prometheus-rules.test.yaml (for `promtool test rules`) tests each
    alert both silent and firing, on series named as the operator exports them."""
    tests = yaml.safe_load((RULES_FILE.parent / "prometheus-rules.test.yaml").read_text())
    assert tests["rule_files"] == ["directservice-rules.yaml"]
    alerts = {rule["alert"] for rule in _rules()}
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    assert {case["alertname"] for case in cases} == alerts
    for alert in alerts:
        outcomes = [bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert]
        assert True in outcomes and False in outcomes, alert
    series = [s["series"] for test in tests["tests"] for s in test["input_series"]]
    names = {re.match(r"[a-z_]+", s).group(0) for s in series}  # type: ignore[union-attr]
    used = {m for rule in _rules() for m in re.findall(r"\bdirectservice_[a-z_]+\b", rule["expr"])}
    assert names == used
