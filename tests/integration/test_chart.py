"""The Helm chart: lint, what each mode renders, the values schema, and the real API server.

helm is the binary built from its Go module (tools.resolve()). Rendered objects are checked
for what the operator relies on (security context, probes, flags, RBAC per mode), then sent
to a real kube-apiserver: as a server-side dry run, and as a real `helm install` and
`helm uninstall` into a control plane of the test's own. Leader election (its flags, the
Lease RBAC, its checks) is in test_chart_election.py; the chart's files read as files
(values schema, CRD copies) in tests/unit/test_chart_files.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.controlplane import ControlPlane
from devenv.tools import Tools
from directservice.cli import _operator_config, build_parser
from helmchart import (
    CHART,
    CI,
    ELECTION_RBAC,
    FULLNAME,
    RELEASE,
    RELEASE_NS,
    Helm,
    container,
    grants,
    kinds,
    only,
    values_file,
    watched_namespace_roles,
)
from support import get_json

pytestmark = pytest.mark.integration

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


@pytest.fixture(scope="module")
def helm(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tools.helm, tmp_path_factory.mktemp("helm-home"))


# -- lint ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", ["", *sorted(p.name for p in CI.glob("*.yaml"))])
def test_lint_is_clean(helm: Helm, values: str) -> None:
    argv = ["lint", "--strict", str(CHART), "--namespace", RELEASE_NS]
    if values:
        argv += ["--values", str(CI / values)]
    result = helm.run(*argv)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout
    assert "0 chart(s) failed" in result.stdout


# -- defaults: one cluster-wide operator, leader-elected ----------------------------------


def test_defaults_render_a_cluster_wide_operator(helm: Helm) -> None:
    docs = helm.render()
    assert sorted(kinds(docs)) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
         "Role", "RoleBinding"]  # the Role and RoleBinding are the Leases'
    )  # fmt: skip
    assert only(docs, "Role")["metadata"]["name"] == ELECTION_RBAC
    deployment = only(docs, "Deployment")
    assert deployment["metadata"]["namespace"] == RELEASE_NS
    assert deployment["spec"]["replicas"] == 1
    # The new pod starts as a standby and takes the Lease the old one releases on SIGTERM.
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    c = container(docs)
    # The name `make image` builds (devenv.image.NAME), tagged with the appVersion.
    assert c["image"] == f"localhost/directservice-operator:{APP_VERSION}"
    assert c["command"] == ["directservice"]
    assert c["args"] == [
        "run",
        "--log-level=info",
        "--log-format=json",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-address=0.0.0.0:9090",
        "--min-poll-interval=1s",
        "--health-checks-in-flight=4096",
        "--leader-election",
        f"--lease-name={FULLNAME}",
        f"--lease-namespace={RELEASE_NS}",
        "--lease-duration=15s",
        "--renew-deadline=10s",
        "--retry-period=1s",
        "--shards=1",
    ]
    binding = only(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == only(docs, "ClusterRole")["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NS}
    ]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == FULLNAME


def test_pod_is_locked_down(helm: Helm) -> None:
    docs = helm.render()
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc
    # The only writable place is a small emptyDir at /tmp.
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    assert container(docs)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert container(docs)["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_probes_hit_kopfs_liveness_endpoint(helm: Helm) -> None:
    c = container(helm.render())
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "metrics": 9090}
    liveness = next(a for a in c["args"] if a.startswith("--liveness="))
    assert liveness == "--liveness=http://0.0.0.0:8080/healthz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    # The downward API: the pod's name starts its Lease identity, its namespace is the Leases'.
    assert c["env"] == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]


def test_metrics_service_targets_the_metrics_port(helm: Helm) -> None:
    docs = helm.render()
    service = only(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_every_flag_the_chart_passes_is_accepted_by_the_cli(helm: Helm) -> None:
    """The container's args parse with the real `directservice` argument parser."""
    for name in ("", "options-values.yaml", "ha-values.yaml", "sharded-values.yaml"):
        values = [CI / name] if name else []
        args = container(helm.render(*values))["args"]
        parsed = build_parser().parse_args(args)
        assert parsed.command == "run"
    args = container(helm.render(CI / "options-values.yaml", CI / "namespaced-values.yaml"))["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.namespace == ["team-a", "team-b"]
    assert parsed.allowed_host == [
        "paiEas=*.pai-eas.aliyuncs.com",
        "pai-eas-vpc.cn-shanghai.aliyuncs.com",
    ]
    assert parsed.allow_discovery_cidr == ["127.0.0.0/8"]
    assert (parsed.service_cidr, parsed.pod_cidr, parsed.denied_cidr) == (
        ["10.96.0.0/12", "fd00:10:96::/108"],
        ["10.244.0.0/16"],
        ["192.168.10.0/24"],
    )
    _operator_config(parsed)  # and the operator takes every value as it is rendered
    assert sorted(parsed.rate_budget) == ["modelArts=20", "paiEas=600"]
    assert (parsed.log_level, parsed.log_format, parsed.min_poll_interval) == (
        "debug",
        "text",
        "2s",
    )
    assert parsed.health_checks_in_flight == 64


# -- RBAC per mode ------------------------------------------------------------------------

# What operator/directservice/kube.py and handlers.py call, plus kopf's own needs.
NAMESPACED_GRANTS = {
    ("directservice.io", "directservices"): {"get", "list", "watch", "patch"},
    ("directservice.io", "directservices/status"): {"patch"},
    ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
    ("discovery.k8s.io", "endpointslices"): {
        "get", "list", "watch", "create", "update", "delete", "deletecollection",
    },
    ("", "events"): {"create"},
    ("", "secrets"): {"get"},
}  # fmt: skip


def test_cluster_wide_rbac_is_exactly_what_the_code_calls(helm: Helm) -> None:
    rules = only(helm.render(), "ClusterRole")["rules"]
    # Nothing on Leases cluster-wide: those are the Lease Role's, in the release namespace.
    assert grants(rules) == {
        **NAMESPACED_GRANTS,
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
    }
    assert not any("*" in r["verbs"] or "*" in r["resources"] for r in rules)


def test_namespaced_mode_uses_roles_only(helm: Helm) -> None:
    docs = helm.render(CI / "namespaced-values.yaml")
    found = kinds(docs)
    assert "ClusterRole" not in found and "ClusterRoleBinding" not in found
    roles = watched_namespace_roles(docs)
    bindings = {
        b["metadata"]["namespace"]: b
        for b in found["RoleBinding"]
        if b["metadata"]["name"] != ELECTION_RBAC
    }
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns, role in roles.items():
        assert grants(role["rules"]) == NAMESPACED_GRANTS, ns
        assert bindings[ns]["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert bindings[ns]["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NS}
        ]
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    # No cluster-scoped object at all in namespaced mode.
    cluster_scoped = [d["kind"] for d in docs if "namespace" not in d["metadata"]]
    assert cluster_scoped == []


def test_servicemonitor_scrapes_the_metrics_service(helm: Helm) -> None:
    assert "ServiceMonitor" not in kinds(helm.render())
    docs = helm.render(CI / "servicemonitor-values.yaml")
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [RELEASE_NS]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["honorLabels"] is True  # keep the DirectService's namespace label
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")


def test_options_reach_the_pod(helm: Helm) -> None:
    docs = helm.render(CI / "options-values.yaml")
    deployment = only(docs, "Deployment")
    pod = deployment["spec"]["template"]
    c = container(docs)
    assert c["image"] == "registry.example.com/platform/directservice-operator:0.1.0"
    assert c["imagePullPolicy"] == "Always"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["serviceAccountName"] == "dsvc-operator"
    assert only(docs, "ServiceAccount")["metadata"]["annotations"] == {
        "example.com/role": "discovery"
    }
    assert pod["metadata"]["labels"]["tier"] == "control"
    assert pod["metadata"]["annotations"] == {"example.com/scrape": "true"}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    for doc in docs:
        assert doc["metadata"]["labels"]["team"] == "platform", doc["kind"]
    # commonLabels never leak into the immutable selector.
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]


# -- the values schema --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replica": 1}, "additional properties 'replica' not allowed"),
        ({"image": {"tga": "1"}}, "additional properties 'tga' not allowed"),
        ({"leaderElection": {"enabled": True, "leaseDuraton": 15}}, "'leaseDuraton' not allowed"),
        ({"peering": {"enabled": True}}, "additional properties 'peering' not allowed"),
        ({"leaderElection": {"leaseDuration": "15s"}}, "at '/leaderElection/leaseDuration'"),
        ({"leaderElection": {"retryPeriod": 0}}, "at '/leaderElection/retryPeriod'"),
        ({"sharding": {"shards": 0}}, "at '/sharding/shards'"),
        ({"sharding": {"shards": 1.5}}, "at '/sharding/shards'"),
        ({"replicas": "two"}, "at '/replicas': got string, want integer"),
        ({"watchNamespaces": "team-a"}, "at '/watchNamespaces': got string, want array"),
        ({"logLevel": "verbose"}, "at '/logLevel': value must be one of"),
        ({"logFormat": "xml"}, "at '/logFormat': value must be one of"),
        ({"minPollInterval": "soon"}, "at '/minPollInterval'"),
        ({"rateBudgets": {"paiEas": 0}}, "at '/rateBudgets/paiEas'"),
        ({"rateBudgets": {"paiEas": "lots"}}, "at '/rateBudgets/paiEas'"),
        ({"watchNamespaces": ["Team_A"]}, "at '/watchNamespaces/0'"),
        ({"serviceMonitor": {"enabled": "yes"}}, "at '/serviceMonitor/enabled'"),
        ({"resources": {"requests": {"cpu": "lots"}}}, "at '/resources/requests/cpu'"),
        ({"tolerations": [{"key": "a", "operater": "Exists"}]}, "'operater' not allowed"),
        ({"podLabels": {"tier": 3}}, "at '/podLabels/tier'"),
        ({"allowedDiscoveryHosts": ["paiEaz=*.aliyuncs.com"]}, "at '/allowedDiscoveryHosts/0'"),
        ({"allowedDiscoveryCIDRs": ["loopback"]}, "at '/allowedDiscoveryCIDRs/0'"),
        ({"clusterNetworks": {"serviceCIDR": []}}, "additional properties 'serviceCIDR'"),
    ],
    ids=[
        "typo-top-level", "typo-nested", "typo-in-election", "peering-is-gone",
        "lease-duration-string", "retry-period-zero", "shards-zero", "shards-fraction",
        "replicas-string",
        "namespaces-not-list", "log-level-enum", "log-format-enum", "duration",
        "budget-zero", "budget-string", "namespace-invalid", "bool-as-string",
        "quantity", "toleration-typo", "label-not-string", "host-provider-typo",
        "cidr-not-cidr", "cluster-networks-typo",
    ],
)  # fmt: skip
def test_schema_rejects_bad_values(
    helm: Helm, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    bad = values_file(tmp_path, values)
    for command in (["template", RELEASE], ["lint", "--strict"]):
        result = helm.run(*command, str(CHART), "--values", str(bad))
        assert result.returncode != 0, command
        output = result.stdout + result.stderr
        assert "values don't meet the specifications of the schema" in output, output
        assert message in output, output


# -- against the API server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def dry_run_cluster(tools: Tools) -> Iterator[ControlPlane]:
    """A control plane with the chart's CRDs and the namespaces its objects go to.

    A server-side dry run stores nothing, so objects that need a namespace or a CRD from
    the same batch would be refused; those exist beforehand, as in a prepared cluster.
    """
    with ControlPlane(tools, crd_dir=CHART / "crds") as cp:
        for ns in (RELEASE_NS, "team-a", "team-b"):
            cp.kubectl("create", "namespace", ns)
        yield cp


def _servicemonitor_crd_installed(cp: ControlPlane) -> bool:
    out = cp.kubectl("api-resources", "--api-group=monitoring.coreos.com", "-o", "name").stdout
    return "servicemonitors.monitoring.coreos.com" in out.split()


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["namespaced-values.yaml"],
        ["ha-values.yaml"],
        ["ha-values.yaml", "namespaced-values.yaml"],
        ["sharded-values.yaml"],
        ["sharded-values.yaml", "namespaced-values.yaml"],
        ["options-values.yaml"],
        ["servicemonitor-values.yaml"],
    ],
    ids=["defaults", "namespaced", "ha", "ha-namespaced", "sharded", "sharded-namespaced",
         "options", "servicemonitor"],
)  # fmt: skip
def test_server_side_dry_run_accepts_the_rendered_chart(
    helm: Helm, dry_run_cluster: ControlPlane, values: list[str]
) -> None:
    docs = helm.render(*(CI / v for v in values))
    # This control plane has no prometheus-operator CRDs, so a ServiceMonitor cannot be
    # checked by it: that object alone is left out (its shape is tested above).
    assert not _servicemonitor_crd_installed(dry_run_cluster)
    sent = [d for d in docs if d["kind"] != "ServiceMonitor"]
    body = "\n---\n".join(yaml.safe_dump(d) for d in sent)
    result = dry_run_cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input=body, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied (server dry run)") == len(sent)
    assert "Warning" not in result.stderr, result.stderr


def test_notes_say_what_to_do_next(helm: Helm, dry_run_cluster: ControlPlane) -> None:
    def notes(*values: str) -> str:
        argv = ["install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--dry-run=server"]
        argv += ["--kubeconfig", str(dry_run_cluster.kubeconfig)]
        for name in values:
            argv += ["--values", str(CI / name)]
        result = helm.run(*argv)
        assert result.returncode == 0, result.stderr
        return result.stdout.split("NOTES:", 1)[1]

    default = notes()
    assert "kubectl apply -f -" in default
    assert "kubectl get dsvc" in default
    assert "dig +short mnist.default.svc.cluster.local" in default
    assert f"The operator holds the Lease {FULLNAME}-shard-0 in namespace {RELEASE_NS}" in default
    assert "the others stand by" not in default
    namespaced = notes("namespaced-values.yaml")
    assert "only these namespaces: team-a, team-b" in namespaced
    assert "namespace: team-a" in namespaced and "mnist.team-a.svc" in namespaced
    ha = notes("ha-values.yaml")
    assert f"2 replica(s) elect a leader through the Lease {FULLNAME}-shard-0" in ha
    assert "one works, the others stand by" in ha
    assert f"kubectl -n {RELEASE_NS} get leases" in ha
    sharded = notes("sharded-values.yaml")
    assert f"3 replica(s) share 4 shards through the Leases {FULLNAME}-shard-0 to -3" in sharded


@pytest.fixture
def bare_cluster(tools: Tools) -> Iterator[ControlPlane]:
    """A control plane without any CRD: `helm install` has to bring them."""
    with ControlPlane(tools, crd_dir=None) as cp:
        yield cp


def test_helm_install_and_uninstall_for_real(helm: Helm, bare_cluster: ControlPlane) -> None:
    cp = bare_cluster
    kube = ("--kubeconfig", str(cp.kubeconfig))
    result = helm.run(
        "install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
        "--values", str(CI / "ha-values.yaml"), *kube,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "STATUS: deployed" in result.stdout
    # crds/ brings the DirectService CRD, and nothing else: no kopf.dev peering CRDs.
    cp.kubectl(
        "wait", "--for=condition=Established", "crd/directservices.directservice.io",
        "--timeout=30s",
    )  # fmt: skip
    crds = [c["metadata"]["name"] for c in get_json(cp, "crd")["items"]]
    assert crds == ["directservices.directservice.io"]
    deployment = get_json(cp, "deployment", FULLNAME, "-n", RELEASE_NS)
    assert deployment["spec"]["replicas"] == 2
    assert get_json(cp, "clusterrole", FULLNAME)["rules"]
    assert get_json(cp, "role", ELECTION_RBAC, "-n", RELEASE_NS)["rules"]
    assert get_json(cp, "rolebinding", ELECTION_RBAC, "-n", RELEASE_NS)["subjects"]
    assert get_json(cp, "pdb", FULLNAME, "-n", RELEASE_NS)["spec"]["maxUnavailable"] == 1

    upgraded = helm.run(
        "upgrade", RELEASE, str(CHART), "--namespace", RELEASE_NS,
        "--values", str(CI / "ha-values.yaml"), "--set", "logLevel=debug", *kube,
    )  # fmt: skip
    assert upgraded.returncode == 0, upgraded.stderr
    args = get_json(cp, "deployment", FULLNAME, "-n", RELEASE_NS)["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    assert "--log-level=debug" in args

    removed = helm.run("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", *kube)
    assert removed.returncode == 0, removed.stderr
    for args in (
        ("deployment", FULLNAME, "-n", RELEASE_NS),
        ("clusterrole", FULLNAME),
        ("clusterrolebinding", FULLNAME),
        ("role", ELECTION_RBAC, "-n", RELEASE_NS),
        ("rolebinding", ELECTION_RBAC, "-n", RELEASE_NS),
    ):
        gone = cp.kubectl("get", *args, check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, args
    # Helm never deletes what crds/ installed: DirectServices survive an uninstall.
    assert cp.kubectl("get", "crd", "directservices.directservice.io", check=False).returncode == 0
