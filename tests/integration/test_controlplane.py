"""The local control plane is a real Kubernetes API: it serves, verifies TLS, enforces RBAC,
issues service-account tokens, serves our CRD, and leaves nothing behind when stopped."""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes.client import ApiClient, CoreV1Api, VersionApi

from devenv.controlplane import DEFAULT_CRD_DIR, ControlPlane
from devenv.housekeeping import purge_namespace
from devenv.tools import KUBERNETES, Tools

pytestmark = pytest.mark.integration


def test_serves_the_pinned_kubernetes_version(api_client: ApiClient) -> None:
    info = VersionApi(api_client).get_code()
    assert info.git_version == KUBERNETES.version()
    items = CoreV1Api(api_client).list_namespace().items
    names = {ns.metadata.name for ns in items if ns.metadata}
    assert {"default", "kube-system"} <= names


def test_kubectl_uses_the_written_kubeconfig(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("version", "-o", "json").stdout
    assert json.loads(out)["serverVersion"]["gitVersion"] == KUBERNETES.version()


def test_tls_is_verified_not_skipped(control_plane: ControlPlane) -> None:
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    assert "insecure-skip-tls-verify" not in cluster
    assert Path(cluster["certificate-authority"]) == control_plane.ca_file
    # The serving certificate does not chain to the system trust store, only to our CA.
    with pytest.raises(urllib.error.URLError) as failure:
        urllib.request.urlopen(control_plane.server + "/version", timeout=5)
    assert isinstance(failure.value.reason, ssl.SSLCertVerificationError)


def test_anonymous_requests_are_refused(control_plane: ControlPlane) -> None:
    context = ssl.create_default_context(cafile=str(control_plane.ca_file))
    with pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(control_plane.server + "/api/v1/namespaces", context=context)
    assert failure.value.code in (401, 403)


def test_service_account_token_is_bound_by_rbac(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp = control_plane
    cp.kubectl("create", "serviceaccount", "reader", "-n", namespace)
    token = cp.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()

    def can_list() -> subprocess.CompletedProcess[str]:
        return cp.kubectl("get", "services", "-n", namespace, f"--token={token}", check=False)

    denied = can_list()
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    cp.kubectl("create", "role", "read", "--verb=list", "--resource=services", "-n", namespace)
    cp.kubectl(
        "create", "rolebinding", "read", "--role=read",
        f"--serviceaccount={namespace}:reader", "-n", namespace,
    )  # fmt: skip
    assert can_list().returncode == 0


def test_crds_from_manifests_are_established_and_served(control_plane: ControlPlane) -> None:
    files = sorted(DEFAULT_CRD_DIR.glob("*.y*ml"))
    if not files:
        pytest.skip(f"no CRDs in {DEFAULT_CRD_DIR}")
    for path in files:
        for crd in filter(None, yaml.safe_load_all(path.read_text())):
            got = json.loads(
                control_plane.kubectl("get", "crd", crd["metadata"]["name"], "-o", "json").stdout
            )
            conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
            assert conditions["Established"] == "True"
            plural = crd["spec"]["names"]["plural"]
            listing = control_plane.kubectl("get", f"{plural}.{crd['spec']['group']}", "-A")
            assert listing.returncode == 0


def test_namespace_purge_really_deletes(control_plane: ControlPlane) -> None:
    cp = control_plane
    cp.kubectl("create", "namespace", "purge-me")
    cp.kubectl("create", "configmap", "leftover", "-n", "purge-me")
    purge_namespace(cp, "purge-me")
    gone = cp.kubectl("get", "namespace", "purge-me", check=False)
    assert "NotFound" in gone.stderr
    leftovers = cp.kubectl("get", "configmaps", "-A", "-o", "name").stdout
    assert "leftover" not in leftovers


def _children() -> set[int]:
    """Live processes whose parent is this test process."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.add(int(stat.parent.name))
    return found


def _mentions(text: str) -> list[int]:
    """Processes whose command line contains `text`."""
    hits = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                hits.append(int(cmdline.parent.name))
        except OSError:
            continue
    return hits


def test_teardown_leaves_no_process_or_temp_dir(tools: Tools) -> None:
    before = _children()
    cp = ControlPlane(tools).start()
    workdir = cp.workdir
    assert workdir is not None
    pids = set(cp.pids)
    assert pids <= _children() - before
    cp.stop()
    assert not workdir.exists()
    assert not (pids & _children())
    assert _children() <= before
    assert _mentions(str(workdir)) == []


def test_failed_start_shows_logs_and_cleans_up(tools: Tools) -> None:
    broken = dataclasses.replace(tools, kube_apiserver=Path("/bin/false"))
    before = _children()
    cp = ControlPlane(broken, crd_dir=None, timeout=10)
    with pytest.raises(RuntimeError, match="kube-apiserver exited") as failure:
        cp.start()
    assert "etcd.log" in str(failure.value)  # the log tails come with the error
    assert cp.workdir is None
    assert _children() <= before
