"""The kubectl install path (manifests/), and the ports the image recipe exposes.

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

import pytest
import yaml

from devenv.controlplane import ControlPlane
from devenv.tools import Tools
from support import REPO, dockerfile_instructions, eventually, get_json

pytestmark = pytest.mark.integration

MANIFESTS = REPO / "manifests"
CHART = REPO / "charts" / "directservice-operator"
CRD_FILE = MANIFESTS / "crds" / "directservice.io_directservices.yaml"
SYSTEM_NS = "directservice-system"
NAME = "directservice-operator"


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
            "Role",  # the Leases' (leader election), in the operator's namespace
            "RoleBinding",
            "Deployment",
            "Service",
        ]
    )
    namespaced = [
        doc
        for doc in built
        if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding", "Deployment", "Service")
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
    assert len(lines) == 9
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
    # The Leases' Role and RoleBinding: same names, same rules, same subject.
    for kind in ("Role", "RoleBinding"):
        (ours_obj,) = _by_kind(built)[kind]
        (charts_obj,) = _by_kind(chart_defaults)[kind]
        assert ours_obj["metadata"]["name"] == charts_obj["metadata"]["name"], kind
        assert ours_obj["metadata"]["namespace"] == charts_obj["metadata"]["namespace"] == SYSTEM_NS
        for field in ("rules", "roleRef", "subjects"):
            assert ours_obj.get(field) == charts_obj.get(field), (kind, field)


def test_pod_spec_matches_the_chart_defaults(
    built: list[dict[str, Any]], chart_defaults: list[dict[str, Any]]
) -> None:
    ours = _by_kind(built)["Deployment"][0]["spec"]
    charts = _by_kind(chart_defaults)["Deployment"][0]["spec"]
    assert ours["template"]["spec"] == charts["template"]["spec"]
    assert ours["selector"] == charts["selector"]
    # Leader election is on in both: the new pod stands by until the old one releases the Lease.
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert ours["strategy"] == charts["strategy"] == rolling
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


# -- the image recipe ---------------------------------------------------------------------
# The Dockerfile's own rules are checked in tests/unit/test_dockerfile.py, the alerting
# example's shape in tests/unit/test_prometheus_rules.py; this one needs the rendered chart.


def test_dockerfile_exposes_the_ports_the_chart_probes(
    chart_defaults: list[dict[str, Any]],
) -> None:
    container = _by_kind(chart_defaults)["Deployment"][0]["spec"]["template"]["spec"]["containers"][
        0
    ]
    ports = {port["containerPort"] for port in container["ports"]}
    exposed = {
        int(p)
        for instruction, rest in dockerfile_instructions()
        if instruction == "EXPOSE"
        for p in rest.split()
    }
    assert ports == exposed
