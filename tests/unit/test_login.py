"""The operator's login: in a cluster from the service account, else from the kubeconfig;
through the kubernetes client only when the kubeconfig's credentials need it. And kopf
loaded without the client libraries in memory (controller/clientless.py)."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path

import kopf
import pytest
import yaml

from directservice.controller.login import in_cluster, log_in

pytestmark = pytest.mark.unit

LOG = logging.getLogger("test")


def kubeconfig(path: Path, user: dict[str, object]) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ns"}}],
        "current-context": "x",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_in_a_cluster_the_service_account_and_the_service_address_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "namespace").write_text("operators")
    (tmp_path / "ca.crt").write_text("not read here")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "6443")

    info = in_cluster(kopf.OperatorSettings(), account=tmp_path)

    assert info is not None
    assert (info.server, info.token, info.default_namespace, info.ca_path) == (
        "https://[fd00::1]:6443",
        "sa-token",
        "operators",
        str(tmp_path / "ca.crt"),
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert in_cluster(kopf.OperatorSettings(), account=tmp_path) is None


def test_a_kubeconfig_with_a_token_is_read_without_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", {"token": "t0k"})))
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # any use of the client would fail

    info = log_in(logger=LOG, settings=kopf.OperatorSettings())

    assert info is not None
    assert (info.server, info.token, info.default_namespace) == (
        "https://127.0.0.1:6443",
        "t0k",
        "ns",
    )


def test_a_kubeconfig_with_an_exec_plugin_logs_in_through_the_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "from-the-plugin"},
    }
    plugin = tmp_path / "plugin"
    plugin.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(credential)}\nEOF\n")
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    exec_user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                          "interactiveMode": "Never"}}  # fmt: skip
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    config = str(kubeconfig(tmp_path / "config", exec_user))
    monkeypatch.setenv("KUBECONFIG", config)
    # The client reads KUBECONFIG when it is imported, and this process imported it already.
    monkeypatch.setattr("kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION", config)

    info = log_in(logger=LOG, settings=kopf.OperatorSettings())

    assert info is not None
    assert (info.server, info.token) == ("https://127.0.0.1:6443", "from-the-plugin")


def test_the_operator_loads_kopf_without_the_client_and_can_import_it_after() -> None:
    program = """
import sys
from directservice.controller.clientless import without_client_libraries
with without_client_libraries():
    from directservice.controller import handlers
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("kubernetes", "urllib3"))
import kubernetes.config  # what the exec-plugin login does, later
print(loaded, "kubernetes.config" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] True"
