"""RBAC proven, not guessed: the operator runs with nothing but what the chart grants.

For each mode (cluster-wide with a ClusterRole, namespaced with Roles only) a control plane
of its own gets the chart's ServiceAccount and RBAC objects (helm template, applied as
admin). A token is minted for the ServiceAccount (TokenRequest) and a second kubeconfig
carries only that token. The operator runs with that kubeconfig and the flags the chart's
Deployment passes, and goes through the walking-skeleton scenario: discovery through the
emulator, Service and EndpointSlices, status, Events, DNS through CoreDNS, and cleanup
on deletion. A control plane per mode keeps the session's cluster-wide operator (which
runs as admin) from reconciling the same objects, so every write here is the token's.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.operatorproc import OperatorProcess
from devenv.tools import Tools
from directservice.emulator.runner import EmulatorThread
from support import (
    apply,
    emulator_requests,
    events_for,
    eventually,
    example_dsvc,
    get_json,
    publish_example,
    render_chart,
    wait_health,
    wait_requests,
)

pytestmark = pytest.mark.e2e

SYSTEM_NS = "directservice-system"
WATCHED = "apps"
UNWATCHED = "elsewhere"  # watched only in cluster-wide mode
SA = "directservice-operator"
SA_USER = f"system:serviceaccount:{SYSTEM_NS}:{SA}"
ELECTION_RBAC = f"{SA}-leader-election"  # the Role and RoleBinding for the Leases
SHARD_LEASE = f"leases.coordination.k8s.io/{SA}-shard-0"  # the only Lease of one shard
_names = itertools.count()


@dataclass
class Setup:
    mode: str
    cp: ControlPlane
    kubeconfig: Path
    rendered: list[dict[str, Any]]
    operator: OperatorProcess
    dns: CoreDNS

    @property
    def clusterwide(self) -> bool:
        return self.mode == "cluster-wide"

    def as_operator(self, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl with the ServiceAccount's token instead of the admin's."""
        argv = [str(self.cp.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def _token_kubeconfig(cp: ControlPlane, path: Path) -> Path:
    """A kubeconfig like the control plane's own, but with a fresh token of the SA."""
    token = cp.kubectl("create", "token", SA, "-n", SYSTEM_NS, "--duration=2h").stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": cp.server, "certificate-authority": str(cp.ca_file)},
            }
        ],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [
            {"name": SA, "context": {"cluster": "local", "user": SA, "namespace": WATCHED}}
        ],
        "current-context": SA,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _operator_args(rendered: list[dict[str, Any]]) -> list[str]:
    """The Deployment's args, minus `run` and the two listen addresses.

    OperatorProcess adds `run` and loopback addresses on free ports itself; everything
    else is passed exactly as the chart renders it.
    """
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "run"
    listen = ("--liveness=", "--metrics-address=")
    return [a for a in args[1:] if not a.startswith(listen)]


@pytest.fixture(scope="module", params=["cluster-wide", "namespaced"])
def setup(
    request: pytest.FixtureRequest, tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    mode: str = request.param
    work = tmp_path_factory.mktemp(f"rbac-{mode}")
    values: dict[str, Any] = {
        "logFormat": "text",
        "minPollInterval": "1s",
        "allowedDiscoveryHosts": ["127.0.0.1"],  # the emulator
        "rateBudgets": {"paiEas": 6000},
    }
    if mode == "namespaced":
        values["watchNamespaces"] = [WATCHED]
    rendered = render_chart(tools.helm, work, values, SYSTEM_NS)
    with ControlPlane(tools) as cp:
        for ns in (SYSTEM_NS, WATCHED, UNWATCHED):
            cp.kubectl("create", "namespace", ns)
        body = "\n---\n".join(yaml.safe_dump(doc) for doc in rendered)
        cp.kubectl("apply", "--server-side", "-f", "-", input=body)
        kubeconfig = _token_kubeconfig(cp, work / "operator.kubeconfig")
        operator = OperatorProcess(kubeconfig, work / "operator.log", _operator_args(rendered))
        with CoreDNS(cp, binary=tools.coredns) as dns:
            operator.start()
            try:
                yield Setup(mode, cp, kubeconfig, rendered, operator, dns)
            finally:
                print(operator.tail(80))
                operator.stop()


# -- what the ServiceAccount may do -------------------------------------------------------

# (verb, resource, subresource): every call in operator/directservice/kube.py and
# handlers.py, and the ones kopf makes for them (list/watch, finalizer/annotation patches).
USED_IN_NAMESPACE = [
    ("get", "directservices.directservice.io", ""),
    ("list", "directservices.directservice.io", ""),
    ("watch", "directservices.directservice.io", ""),
    ("patch", "directservices.directservice.io", ""),
    ("patch", "directservices.directservice.io", "status"),
    ("get", "services", ""),
    ("list", "services", ""),
    ("watch", "services", ""),
    ("create", "services", ""),
    ("patch", "services", ""),
    ("delete", "services", ""),
    ("get", "endpointslices.discovery.k8s.io", ""),
    ("list", "endpointslices.discovery.k8s.io", ""),
    ("watch", "endpointslices.discovery.k8s.io", ""),
    ("create", "endpointslices.discovery.k8s.io", ""),
    ("update", "endpointslices.discovery.k8s.io", ""),
    ("delete", "endpointslices.discovery.k8s.io", ""),
    ("deletecollection", "endpointslices.discovery.k8s.io", ""),
    ("create", "events", ""),
    ("get", "secrets", ""),
]
NEVER_IN_NAMESPACE = [
    ("list", "secrets", ""),
    ("watch", "secrets", ""),
    ("update", "services", ""),
    ("update", "directservices.directservice.io", ""),
    ("create", "directservices.directservice.io", ""),
    ("delete", "directservices.directservice.io", ""),
    ("update", "directservices.directservice.io", "status"),
    ("get", "pods", ""),
    ("create", "pods", ""),
    ("get", "configmaps", ""),
    ("patch", "events", ""),
    ("patch", "deployments.apps", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
]
NEVER_CLUSTER = [
    ("list", "namespaces", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("get", "nodes", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", ""),
]


def _can_i(cp: ControlPlane, verb: str, resource: str, sub: str, namespace: str | None) -> bool:
    argv = ["auth", "can-i", verb, resource, f"--as={SA_USER}"]
    argv += [f"--subresource={sub}"] if sub else []
    argv += ["-n", namespace] if namespace else []
    result = cp.kubectl(*argv, check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_service_account_may_make_every_call_the_operator_makes(setup: Setup) -> None:
    namespaces = [WATCHED, UNWATCHED] if setup.clusterwide else [WATCHED]
    missing = [
        (verb, resource, sub, ns)
        for ns in namespaces
        for verb, resource, sub in USED_IN_NAMESPACE
        if not _can_i(setup.cp, verb, resource, sub, ns)
    ]
    assert missing == []
    crds = "customresourcedefinitions.apiextensions.k8s.io"
    # kopf watches CRDs cluster-wide; a Role cannot grant that, so namespaced mode goes without.
    for verb in ("list", "watch"):
        assert _can_i(setup.cp, verb, crds, "", None) is setup.clusterwide


def test_service_account_may_do_nothing_more(setup: Setup) -> None:
    granted = [
        (verb, resource, sub, ns)
        for ns in (WATCHED, UNWATCHED)
        for verb, resource, sub in NEVER_IN_NAMESPACE
        if _can_i(setup.cp, verb, resource, sub, ns)
    ]
    granted += [
        (verb, resource, sub, None)
        for verb, resource, sub in NEVER_CLUSTER
        if _can_i(setup.cp, verb, resource, sub, None)
    ]
    assert granted == []
    if not setup.clusterwide:  # namespaced mode: nothing at all outside the watched namespace
        outside = [
            (verb, resource, sub)
            for verb, resource, sub in USED_IN_NAMESPACE
            if _can_i(setup.cp, verb, resource, sub, UNWATCHED)
        ]
        assert outside == []


def test_leader_election_may_use_its_lease_and_no_other(setup: Setup) -> None:
    """The operator runs with --leader-election (the chart's default): its one Lease, in the
    operator's namespace, by name; create by any name (RBAC cannot narrow it); no more."""
    for verb in ("get", "update"):
        assert _can_i(setup.cp, verb, SHARD_LEASE, "", SYSTEM_NS), verb
    assert _can_i(setup.cp, "create", "leases.coordination.k8s.io", "", SYSTEM_NS)
    never = [
        (verb, what, ns)
        for verb, what, ns in [
            ("list", "leases.coordination.k8s.io", SYSTEM_NS),
            ("watch", "leases.coordination.k8s.io", SYSTEM_NS),
            ("delete", SHARD_LEASE, SYSTEM_NS),
            ("update", f"leases.coordination.k8s.io/{SA}-shard-1", SYSTEM_NS),
            ("create", "leases.coordination.k8s.io", WATCHED),
            ("get", SHARD_LEASE, WATCHED),
        ]
        if _can_i(setup.cp, verb, what, "", ns)
    ]
    assert never == []
    lease = get_json(setup.cp, "lease", f"{SA}-shard-0", "-n", SYSTEM_NS)
    assert lease["spec"]["holderIdentity"], "the operator took its Lease with the token"


def test_namespaced_mode_grants_nothing_cluster_wide(setup: Setup) -> None:
    election = {
        (doc["kind"], doc["metadata"]["namespace"])
        for doc in setup.rendered
        if doc["metadata"]["name"] == ELECTION_RBAC
    }
    assert election == {("Role", SYSTEM_NS), ("RoleBinding", SYSTEM_NS)}  # in both modes
    kinds = {doc["kind"] for doc in setup.rendered if doc["metadata"]["name"] != ELECTION_RBAC}
    if setup.clusterwide:
        assert {"ClusterRole", "ClusterRoleBinding"} <= kinds
        assert not {"Role", "RoleBinding"} & kinds
    else:
        assert {"Role", "RoleBinding"} <= kinds
        assert not {"ClusterRole", "ClusterRoleBinding"} & kinds
        bindings = get_json(setup.cp, "clusterrolebindings")["items"]
        subjects = [s for b in bindings for s in b.get("subjects") or []]
        assert not [s for s in subjects if s.get("name") == SA]


def test_the_token_is_refused_what_the_chart_does_not_grant(setup: Setup) -> None:
    whoami = setup.as_operator("auth", "whoami", "-o", "json")
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == SA_USER
    setup.cp.kubectl("create", "secret", "generic", "provider-key", "-n", WATCHED,
                     "--from-literal=token=s3cr3t")  # fmt: skip
    # get by name is granted (providers read a named Secret)...
    got = setup.as_operator("get", "secret", "provider-key", "-n", WATCHED, "-o", "name")
    assert got.returncode == 0, got.stderr
    # ...listing them is not.
    listed = setup.as_operator("get", "secrets", "-n", WATCHED)
    assert listed.returncode != 0
    assert "Forbidden" in listed.stderr and 'cannot list resource "secrets"' in listed.stderr
    pods = setup.as_operator("get", "pods", "-n", WATCHED)
    assert pods.returncode != 0 and "Forbidden" in pods.stderr
    namespaces = setup.as_operator("get", "namespaces")
    assert namespaces.returncode != 0 and "Forbidden" in namespaces.stderr


# -- the operator at work with that token -------------------------------------------------


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


def _assert_no_permission_errors(setup: Setup) -> None:
    """The operator's whole log, start-up included, shows no refused call.

    In namespaced mode kopf would list namespaces and watch CRDs cluster-wide, which no
    Role can grant; the operator turns kopf's scanning off there (settings.scanning)."""
    log = setup.operator.log_path.read_text()
    # The timestamp goes first: its milliseconds may read ",403".
    problems = [
        line
        for line in log.splitlines()
        if re.search(r"\b403\b|forbidden|Forbidden|Not enough permissions", TIMESTAMP.sub("", line))
    ]
    assert problems == [], "\n".join(problems)


def test_operator_publishes_and_cleans_up_with_the_charts_rbac_only(
    setup: Setup, emulator: EmulatorThread
) -> None:
    cp, dns = setup.cp, setup.dns
    name = f"mnist-{next(_names)}"
    # Service + EndpointSlices created (create), watched back (list/watch) and resolved, and
    # status written through the subresource (directservices/status patch).
    ips = {"10.40.0.1", "10.40.0.2", "10.40.0.3"}
    eas, fqdn = publish_example(cp, dns, emulator, WATCHED, ips, name=name)
    # Finalizer added by kopf (directservices patch).
    assert (
        "directservice.io/cleanup"
        in get_json(cp, "dsvc", name, "-n", WATCHED)["metadata"]["finalizers"]
    )
    # Events posted (events create), by the operator itself.
    reasons = eventually(
        "Events",
        lambda: {e["reason"] for e in events_for(cp, WATCHED, name)} or None,
        10,
    )
    assert "EndpointsPublished" in reasons
    # The printer columns show what the operator wrote.
    row = cp.kubectl("get", "dsvc", name, "-n", WATCHED, "--no-headers").stdout.split()
    assert row[:4] == [name, "paiEas", "3", "3"]
    # The series the alerting example uses exist, with the DirectService's labels.
    ready = f'directservice_ready_endpoints{{name="{name}",namespace="{WATCHED}"}} 3.0'
    assert ready in setup.operator.metrics_text()

    # A change replaces a slice (endpointslices update) and reaches DNS.
    changed = {"10.40.0.1", "10.40.0.9"}
    emulator.set_instances(
        eas, [{"ip": ip, "port": 50000, "weight": 100} for ip in sorted(changed)]
    )
    eventually("changed A records", lambda: a_records(dns.address, fqdn) == changed, 15)

    # Deletion: kopf runs the cleanup handler (deletecollection, delete), then drops the
    # finalizer (patch) so the object goes.
    cp.kubectl("delete", "dsvc", name, "-n", WATCHED, "--wait=true", "--timeout=30s")
    slices = get_json(
        cp, "endpointslices", "-n", WATCHED, "-l", f"kubernetes.io/service-name={name}"
    )
    assert slices["items"] == []
    gone = cp.kubectl("get", "service", name, "-n", WATCHED, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    # Every call of that lifecycle (and of start-up) was allowed.
    _assert_no_permission_errors(setup)


def test_unwatched_namespace_is_left_alone_in_namespaced_mode(
    setup: Setup, emulator: EmulatorThread
) -> None:
    cp = setup.cp
    dsvc, eas = example_dsvc(emulator.url, UNWATCHED, name=f"mnist-{next(_names)}")
    name = dsvc["metadata"]["name"]
    emulator.set_instances(eas, [{"ip": "10.41.0.1", "port": 7000, "weight": 100}])
    apply(cp, dsvc)
    if setup.clusterwide:
        wait_health(cp, UNWATCHED, name, "True", timeout=15)
        cp.kubectl("delete", "dsvc", name, "-n", UNWATCHED, "--wait=true", "--timeout=30s")
        _assert_no_permission_errors(setup)
        return
    # A witness in the watched namespace, made after the unwatched one: once the operator
    # has polled it four times, it would have seen the unwatched one too.
    witness, witness_eas = example_dsvc(emulator.url, WATCHED, name=f"mnist-{next(_names)}")
    emulator.set_instances(witness_eas, [{"ip": "10.41.0.2", "port": 7000, "weight": 100}])
    apply(cp, witness)
    wait_requests(emulator, witness_eas, 4)
    obj = get_json(cp, "dsvc", name, "-n", UNWATCHED)
    assert "finalizers" not in obj["metadata"]
    assert "status" not in obj
    assert emulator_requests(emulator, eas) == 0, "discovery was polled"
    missing = cp.kubectl("get", "service", name, "-n", UNWATCHED, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    cp.kubectl("delete", "dsvc", name, "-n", UNWATCHED, "--wait=true", "--timeout=30s")
    witness_name = witness["metadata"]["name"]
    cp.kubectl("delete", "dsvc", witness_name, "-n", WATCHED, "--wait=true", "--timeout=30s")
    _assert_no_permission_errors(setup)
