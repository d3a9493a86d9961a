"""The example alerting rules, checked and unit-tested by promtool built from its Go module."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devenv.tools import Tools
from support import REPO

pytestmark = pytest.mark.integration

MONITORING = REPO / "examples" / "monitoring"


def _promtool(tools: Tools, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(tools.promtool), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_rules_pass_promtool_check_and_unit_tests(tools: Tools, tmp_path: Path) -> None:
    rule = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    (tmp_path / "directservice-rules.yaml").write_text(yaml.safe_dump(rule["spec"]))
    shutil.copy(MONITORING / "prometheus-rules.test.yaml", tmp_path)

    checked = _promtool(tools, "check", "rules", "directservice-rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool(tools, "test", "rules", "prometheus-rules.test.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout + tested.stderr


def test_promtool_rejects_a_broken_rule(tools: Tools, tmp_path: Path) -> None:
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "rate(foo[5m]"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    checked = _promtool(tools, "check", "rules", "broken.yaml", cwd=tmp_path)
    assert checked.returncode != 0
