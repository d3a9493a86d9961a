"""The Helm chart as the chart tests see it: the built helm binary, rendered objects by kind,
and the names one release (`dsvc` in directservice-system) gives its objects and Leases.

Used by tests/integration/test_chart.py and test_chart_election.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import REPO

CHART = REPO / "charts" / "directservice-operator"
CI = CHART / "ci"
RELEASE = "dsvc"
RELEASE_NS = "directservice-system"
FULLNAME = "dsvc-directservice-operator"
SA_USER = f"system:serviceaccount:{RELEASE_NS}:{FULLNAME}"
ELECTION_RBAC = f"{FULLNAME}-leader-election"  # the Role and RoleBinding for the Leases

Docs = list[dict[str, Any]]


class Helm:
    """The built helm binary with its own cache/config/data folders."""

    def __init__(self, binary: Path, home: Path) -> None:
        self.binary = binary
        self.env = {f"HELM_{k}_HOME": str(home / k.lower()) for k in ("CACHE", "CONFIG", "DATA")}

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stderr}")
        return result

    def template(self, *values: Path, extra: tuple[str, ...] = ()) -> str:
        argv = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *extra]
        for path in values:
            argv += ["--values", str(path)]
        return self.run(*argv, check=True).stdout

    def render(self, *values: Path, extra: tuple[str, ...] = ()) -> Docs:
        return [doc for doc in yaml.safe_load_all(self.template(*values, extra=extra)) if doc]

    def refused(self, *values: Path, extra: tuple[str, ...] = ()) -> str:
        """What `helm template` says when it refuses the values (it must refuse them)."""
        argv = ["template", RELEASE, str(CHART), "--namespace", RELEASE_NS, *extra]
        for path in values:
            argv += ["--values", str(path)]
        result = self.run(*argv)
        assert result.returncode != 0, "helm template accepted the values"
        return result.stdout + result.stderr


def kinds(docs: Docs) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        found.setdefault(doc["kind"], []).append(doc)
    return found


def only(docs: Docs, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in kinds(docs).get(kind, []) if name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: Docs) -> dict[str, Any]:
    spec = only(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return dict(spec["containers"][0])


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over all rules (resourceNames aside)."""
    found: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                found.setdefault((group, resource), set()).update(rule["verbs"])
    return found


def watched_namespace_roles(docs: Docs) -> dict[str, dict[str, Any]]:
    """The Roles of namespaced mode by namespace, without the Lease Role."""
    roles = kinds(docs).get("Role", [])
    return {r["metadata"]["namespace"]: r for r in roles if r["metadata"]["name"] != ELECTION_RBAC}
