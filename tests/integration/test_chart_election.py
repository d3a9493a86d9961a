"""The chart's leader election: the flags it passes, the Lease RBAC, and the values it refuses.

The operator's Leases are `<lease-name>-shard-<i>` per shard and, with more than one shard,
`<lease-name>-members`, all in the release namespace. The chart's Role must grant `get` and
`update` on exactly those names and `create` (which RBAC cannot limit by name), nothing
more; the rendered flags must parse into the election the operator runs. A real API server
then answers `kubectl auth can-i` for the chart's ServiceAccount, and takes the calls the
elector makes, impersonating it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.tools import Tools
from directservice.cli import _election, build_parser
from directservice.controller.election import shard_lease
from helmchart import (
    CI,
    ELECTION_RBAC,
    FULLNAME,
    RELEASE_NS,
    SA_USER,
    Docs,
    Helm,
    container,
    grants,
    kinds,
    only,
    values_file,
    watched_namespace_roles,
)

pytestmark = pytest.mark.integration

LEASES = ("coordination.k8s.io", "leases")
ELECTION_FLAGS = ("--leader-election", "--lease-", "--renew-deadline", "--retry-period",
                  "--shards")  # fmt: skip


@pytest.fixture(scope="module")
def helm(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tools.helm, tmp_path_factory.mktemp("helm-home"))


def lease_names(shards: int) -> list[str]:
    """The Leases the elector reads and writes, named by the operator's own code."""
    names = [shard_lease(FULLNAME, shard) for shard in range(shards)]
    return [*names, f"{FULLNAME}-members"] if shards > 1 else names


def election_args(docs: Docs) -> list[str]:
    return [a for a in container(docs)["args"] if a.startswith(ELECTION_FLAGS)]


# -- the flags ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "shards", "timing"),
    [
        ([], 1, (15.0, 10.0, 1.0)),
        (["ha-values.yaml"], 1, (15.0, 10.0, 2.0)),
        (["sharded-values.yaml"], 4, (30.0, 20.0, 4.0)),
    ],
    ids=["defaults", "ha", "sharded"],
)
def test_rendered_flags_are_the_election_the_operator_runs(
    helm: Helm,
    monkeypatch: pytest.MonkeyPatch,
    values: list[str],
    shards: int,
    timing: tuple[float, float, float],
) -> None:
    docs = helm.render(*(CI / v for v in values))
    duration, renew, retry = (f"{t:g}s" for t in timing)
    assert election_args(docs) == [
        "--leader-election",
        f"--lease-name={FULLNAME}",
        f"--lease-namespace={RELEASE_NS}",
        f"--lease-duration={duration}",
        f"--renew-deadline={renew}",
        f"--retry-period={retry}",
        f"--shards={shards}",
    ]
    # The namespace is a flag, so the Leases are where the Role is even without the env.
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    monkeypatch.setenv("POD_NAME", "dsvc-directservice-operator-7d9c-x1")
    election = _election(build_parser().parse_args(container(docs)["args"]))
    assert election is not None
    assert (election.lease_name, election.namespace, election.shards) == (
        FULLNAME,
        RELEASE_NS,
        shards,
    )
    t = election.timing
    assert (t.duration, t.renew_deadline, t.retry_period) == timing
    assert election.identity.startswith("dsvc-directservice-operator-7d9c-x1-")


def test_standalone_has_no_election_and_no_leases(helm: Helm, tmp_path: Path) -> None:
    docs = helm.render(values_file(tmp_path, {"leaderElection": {"enabled": False}}))
    assert election_args(docs) == []
    assert _election(build_parser().parse_args(container(docs)["args"])) is None
    assert "Role" not in kinds(docs) and "RoleBinding" not in kinds(docs)
    # Two standalone operators must never overlap: stop the old one, then start the new.
    assert only(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


# -- the Lease RBAC -----------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 2, 5])
def test_lease_role_grants_exactly_the_elector_calls(helm: Helm, shards: int) -> None:
    docs = helm.render(extra=("--set", f"sharding.shards={shards}", "--set", "replicas=3"))
    role = only(docs, "Role", ELECTION_RBAC)
    assert role["metadata"]["namespace"] == RELEASE_NS
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": lease_names(shards),
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = only(docs, "RoleBinding", ELECTION_RBAC)
    assert binding["metadata"]["namespace"] == RELEASE_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": ELECTION_RBAC,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NS}
    ]
    assert LEASES not in grants(only(docs, "ClusterRole")["rules"])


def test_namespaced_mode_keeps_the_leases_in_the_release_namespace(helm: Helm) -> None:
    docs = helm.render(CI / "sharded-values.yaml", CI / "namespaced-values.yaml")
    assert only(docs, "Role", ELECTION_RBAC)["metadata"]["namespace"] == RELEASE_NS
    assert only(docs, "RoleBinding", ELECTION_RBAC)["metadata"]["namespace"] == RELEASE_NS
    roles = watched_namespace_roles(docs)
    assert set(roles) == {"team-a", "team-b"}
    for ns, role in roles.items():
        assert LEASES not in grants(role["rules"]), ns
    assert [d["kind"] for d in docs if "namespace" not in d["metadata"]] == []


def test_no_rbac_objects_when_rbac_create_is_false(helm: Helm) -> None:
    docs = helm.render(CI / "ha-values.yaml", extra=("--set", "rbac.create=false"))
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"} & set(kinds(docs))
    assert "--leader-election" in election_args(docs)


def test_nothing_of_kopf_peering_is_rendered(helm: Helm) -> None:
    for values in ([], [CI / "ha-values.yaml"], [CI / "sharded-values.yaml"],
                   [CI / "ha-values.yaml", CI / "namespaced-values.yaml"]):  # fmt: skip
        text = helm.template(*values)
        for word in ("kopf.dev", "KopfPeering", "peering", "POD_ID"):
            assert word.lower() not in text.lower(), (word, values)


# -- values the chart refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "leaderElection": {"enabled": False}},
         "replicas is 2 but leaderElection.enabled is false: several replicas without leader "
         "election would all reconcile the same DirectServices at once"),
        ({"leaderElection": {"leaseDuration": 10, "renewDeadline": 10}},
         "leaderElection.renewDeadline (10) must be below leaderElection.leaseDuration (10)"),
        ({"leaderElection": {"leaseDuration": 8, "renewDeadline": 12.5}},
         "leaderElection.renewDeadline (12.5) must be below leaderElection.leaseDuration (8)"),
        ({"leaderElection": {"renewDeadline": 10, "retryPeriod": 10}},
         "leaderElection.retryPeriod (10) must be below leaderElection.renewDeadline (10)"),
        ({"sharding": {"shards": 3}, "leaderElection": {"enabled": False}},
         "sharding.shards is 3 but leaderElection.enabled is false"),
    ],
    ids=["replicas-without-election", "renew-equals-duration", "renew-above-duration",
         "retry-equals-renew", "shards-without-election"],
)  # fmt: skip
def test_unsafe_election_values_fail(
    helm: Helm, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in helm.refused(values_file(tmp_path, values))


def test_one_replica_or_a_standalone_operator_passes_the_checks(helm: Helm, tmp_path: Path) -> None:
    """The checks above are not blanket refusals: their boundaries render."""
    for values in (
        {"replicas": 1, "leaderElection": {"enabled": False}},
        {"replicas": 0, "leaderElection": {"enabled": False}},
        {"leaderElection": {"enabled": False, "leaseDuration": 5, "renewDeadline": 10}},
        {"leaderElection": {"leaseDuration": 2.5, "renewDeadline": 2, "retryPeriod": 0.5}},
    ):
        assert only(helm.render(values_file(tmp_path, values)), "Deployment")


# -- against the API server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def granted_cluster(tools: Tools, helm: Helm) -> Iterator[ControlPlane]:
    """A control plane holding the chart's RBAC objects for four shards (sharded-values)."""
    docs = helm.render(CI / "sharded-values.yaml")
    rbac = [d for d in docs if d["kind"] in ("Role", "RoleBinding", "ClusterRole",
                                             "ClusterRoleBinding")]  # fmt: skip
    with ControlPlane(tools, crd_dir=None) as cp:
        for ns in (RELEASE_NS, "team-a"):
            cp.kubectl("create", "namespace", ns)
        cp.kubectl("apply", "--server-side", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "List", "items": rbac,
        }))  # fmt: skip
        yield cp


def can_i(cp: ControlPlane, verb: str, what: str, namespace: str = RELEASE_NS) -> bool:
    result = cp.kubectl("auth", "can-i", verb, what, f"--as={SA_USER}", "-n", namespace,
                        check=False)  # fmt: skip
    assert result.stdout.strip() in ("yes", "no"), result.stderr
    return result.stdout.strip() == "yes"


def test_api_server_grants_the_leases_and_nothing_else(granted_cluster: ControlPlane) -> None:
    cp = granted_cluster
    names = lease_names(4)
    assert len(names) == 5 and names[-1] == f"{FULLNAME}-members"
    missing = [
        (verb, name) for name in names for verb in ("get", "update")
        if not can_i(cp, verb, f"leases.coordination.k8s.io/{name}")
    ]  # fmt: skip
    assert missing == [] and can_i(cp, "create", "leases.coordination.k8s.io")
    beyond = [
        (verb, what, ns)
        for verb, what, ns in [
            ("list", "leases.coordination.k8s.io", RELEASE_NS),
            ("watch", "leases.coordination.k8s.io", RELEASE_NS),
            ("delete", f"leases.coordination.k8s.io/{names[0]}", RELEASE_NS),
            ("patch", f"leases.coordination.k8s.io/{names[0]}", RELEASE_NS),
            ("get", f"leases.coordination.k8s.io/{FULLNAME}-shard-4", RELEASE_NS),
            ("update", "leases.coordination.k8s.io/kube-controller-manager", RELEASE_NS),
            ("create", "leases.coordination.k8s.io", "team-a"),
            ("get", f"leases.coordination.k8s.io/{names[0]}", "team-a"),
        ]
        if can_i(cp, verb, what, ns)
    ]
    assert beyond == []


def test_the_elector_calls_pass_as_the_service_account(granted_cluster: ControlPlane) -> None:
    """create, get and a resourceVersion-guarded update of a shard's Lease, as the elector
    makes them; a Lease of another name can be created (RBAC cannot stop that) but not
    renewed or read back."""
    cp = granted_cluster
    as_sa = (f"--as={SA_USER}", "-n", RELEASE_NS)

    def lease(name: str, holder: str, version: str | None = None) -> str:
        meta: dict[str, Any] = {"name": name, "namespace": RELEASE_NS}
        if version:
            meta["resourceVersion"] = version
        spec = {"holderIdentity": holder, "leaseDurationSeconds": 30}
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta}
        return json.dumps({**body, "spec": spec})

    shard = shard_lease(FULLNAME, 0)
    cp.kubectl("create", "-f", "-", *as_sa, input=lease(shard, "replica-a"))
    read = json.loads(cp.kubectl("get", "lease", shard, "-o", "json", *as_sa).stdout)
    version = read["metadata"]["resourceVersion"]
    cp.kubectl("replace", "-f", "-", *as_sa, input=lease(shard, "replica-b", version))
    stale = cp.kubectl("replace", "-f", "-", *as_sa, input=lease(shard, "replica-c", version),
                       check=False)  # fmt: skip
    assert stale.returncode != 0 and "Conflict" in stale.stderr, stale.stderr
    held = json.loads(cp.kubectl("get", "lease", shard, "-o", "json", *as_sa).stdout)
    assert held["spec"]["holderIdentity"] == "replica-b"

    other = "not-ours"
    cp.kubectl("create", "-f", "-", *as_sa, input=lease(other, "replica-a"))
    for verb in (("get", "lease", other), ("get", "leases")):
        refused = cp.kubectl(*verb, *as_sa, check=False)
        assert refused.returncode != 0 and "Forbidden" in refused.stderr, verb
