"""The Helm chart's files as files: CI values per mode, a strict and documented values
schema, the CRD copies (and devenv.crdsync that keeps them), the leader-election values,
and no trace of kopf peering in the chart or manifests/.

helm, and the API server, check the chart in tests/integration/test_chart.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv import crdsync
from devenv.paths import child_env
from support import REPO

pytestmark = pytest.mark.unit

CHART = REPO / "charts" / "directservice-operator"
CI = CHART / "ci"


def test_ci_values_cover_each_mode() -> None:
    assert {p.name for p in CI.glob("*.yaml")} >= {
        "namespaced-values.yaml",
        "ha-values.yaml",
        "sharded-values.yaml",
        "servicemonitor-values.yaml",
    }


def test_schema_is_strict_everywhere() -> None:
    """Every object with fixed keys refuses unknown ones; maps constrain their values."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    # affinity's members are core/v1 types the API server validates in full.
    passthrough = {"/global", "/affinity/nodeAffinity", "/affinity/podAffinity",
                   "/affinity/podAntiAffinity"}  # fmt: skip

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and path not in passthrough:
            if "properties" in node:
                assert node.get("additionalProperties") is False, path
            else:
                assert isinstance(node.get("additionalProperties"), dict), path
                assert "propertyNames" in node, path
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}/{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")


def _keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    found: set[str] = set()
    for key, value in values.items():
        found.add(prefix + key)
        if isinstance(value, dict) and value:
            found |= _keys(value, f"{prefix}{key}.")
    return found


def test_values_are_documented_line_by_line() -> None:
    """Every key in values.yaml has a comment: on the line above or at the end of its line."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or stripped.startswith("- "):
            continue
        above = lines[index - 1].strip() if index else ""
        if not above.startswith("#") and " # " not in line:
            undocumented.append(line)
    assert undocumented == []
    schema = json.loads((CHART / "values.schema.json").read_text())

    def described(node: dict[str, Any], path: str) -> None:
        assert node.get("description"), f"{path} has no description in the schema"
        for key, child in node.get("properties", {}).items():
            described(child, f"{path}.{key}")

    for key, child in schema["properties"].items():
        described(child, key)
    assert _keys(yaml.safe_load((CHART / "values.yaml").read_text())) <= _keys(
        _schema_skeleton(schema)
    )


def _schema_skeleton(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _schema_skeleton(child) if "properties" in child else {}
        for key, child in schema.get("properties", {}).items()
    }


def test_chart_crd_is_an_exact_copy_of_the_manifest() -> None:
    source = REPO / "manifests" / "crds" / "directservice.io_directservices.yaml"
    copy = CHART / "crds" / source.name
    assert copy.read_bytes() == source.read_bytes(), (
        "the chart's CRD drifted from manifests/crds: run python -m devenv.crdsync"
    )
    assert crdsync.drifts() == []


def test_crdsync_finds_and_fixes_drift(tmp_path: Path) -> None:
    source, chart = tmp_path / "source", tmp_path / "chart"
    source.mkdir()
    chart.mkdir()
    (source / "a.yaml").write_text("kind: A\n")
    (source / "b.yaml").write_text("kind: B\n")
    (chart / "a.yaml").write_text("kind: A  # edited by hand\n")
    (chart / "extra.yaml").write_text("kind: Extra\n")  # chart-only files are left alone
    drifts = crdsync.drifts(source, chart)
    assert [(d.source.name, d.missing) for d in drifts] == [("a.yaml", False), ("b.yaml", True)]
    assert [d.copy.name for d in crdsync.sync(source, chart)] == ["a.yaml", "b.yaml"]
    assert crdsync.drifts(source, chart) == []
    assert (chart / "a.yaml").read_text() == "kind: A\n"
    assert (chart / "extra.yaml").read_text() == "kind: Extra\n"


def test_crdsync_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdsync.main(["--check"]) == 0
    assert "chart CRDs match manifests/crds" in capsys.readouterr().out
    # As a module, the way the Makefile target runs it.
    result = subprocess.run(
        [sys.executable, "-m", "devenv.crdsync", "--check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(),  # both source roots: devenv lives in dev/
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_leader_election_is_on_by_default_with_safe_timing() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["leaderElection"] == {
        "enabled": True,
        "leaseDuration": 15,
        "renewDeadline": 10,
        "retryPeriod": 1,
    }
    assert values["sharding"] == {"shards": 1}
    assert values["replicas"] == 1
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert {"leaderElection", "sharding"} <= set(schema["required"])
    assert schema["properties"]["sharding"]["properties"]["shards"]["type"] == "integer"
    assert schema["properties"]["sharding"]["properties"]["shards"]["minimum"] == 1


def test_ci_values_run_several_replicas_only_with_leader_election() -> None:
    for path in sorted(CI.glob("*.yaml")):
        values = yaml.safe_load(path.read_text()) or {}
        if values.get("replicas", 1) > 1:
            assert values["leaderElection"]["enabled"] is True, path.name
    sharded = yaml.safe_load((CI / "sharded-values.yaml").read_text())
    assert sharded["sharding"]["shards"] > 1 and sharded["replicas"] > 1


def test_no_kopf_peering_is_left_in_the_chart_or_the_manifests() -> None:
    """Leases replaced kopf peering: no peering CRD, object, value, flag or grant remains."""
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == [
        "directservice.io_directservices.yaml"
    ]
    files = [p for root in (CHART, REPO / "manifests") for p in root.rglob("*") if p.is_file()]
    assert len(files) > 10
    leftovers = [
        (str(path.relative_to(REPO)), word)
        for path in files
        for word in ("kopf.dev", "kopfpeering", "peering", "POD_ID")
        if word.lower() in path.read_text().lower()
    ]
    assert leftovers == []
