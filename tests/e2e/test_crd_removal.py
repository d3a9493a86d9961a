"""Removing the CRD with DirectServices present: the operator cleans up what it made, so the
CRD's deletion completes, and it serves the CRD again once it is installed again.

kube-apiserver deletes every DirectService when their CRD is deleted; each is held by the
operator's finalizer until its Service and slices are gone. The operator may exit once the
resource it watches no longer exists (as a Deployment's pod would, to be restarted); started
again, it serves the re-installed CRD. Each mode runs on a control plane of its own.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from devenv.controlplane import DEFAULT_CRD_DIR, ControlPlane
from devenv.operatorproc import OperatorProcess
from devenv.procs import http_ok
from directservice.emulator.runner import EmulatorThread
from faultkit import dsvc_path, missing
from support import (
    create,
    directservice,
    emulator_requests,
    eventually,
    pai_eas,
    service,
    slices,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e

CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/directservices.directservice.io"
NAMESPACE = "crd-removal"


def published(cp: ControlPlane, emulator: EmulatorThread, ip: str) -> str:
    name = f"crd-{secrets.token_hex(3)}"
    emulator.set_instances(name, [{"ip": ip, "port": 80}])
    create(cp, directservice(NAMESPACE, name, pai_eas(emulator.url, name)))
    wait_published(cp, NAMESPACE, name, {(ip, 80)})
    return name


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_removing_the_crd_cleans_up_and_a_reinstalled_crd_is_served(
    own_cluster: ControlPlane, emulator: EmulatorThread, tmp_path: Path, mode: str
) -> None:
    cp = own_cluster
    args = ["-n", NAMESPACE] if mode == "namespaced" else []
    operator = OperatorProcess(cp.kubeconfig, tmp_path / "operator.log", extra_args=args)
    operator.start()
    try:
        names = [published(cp, emulator, f"10.65.0.{i + 1}") for i in range(2)]
        cp.request("DELETE", CRD)
        eventually(
            "the CRD deleted (its DirectServices cleaned up first)", lambda: missing(cp, CRD), 30
        )
        for name in names:
            assert service(cp, NAMESPACE, name) is None, f"the Service of {name} is left"
            assert not slices(cp, NAMESPACE, name), f"slices of {name} are left"
        cp.apply_crds(DEFAULT_CRD_DIR)
        live = f"http://127.0.0.1:{operator.liveness_port}/healthz"
        if not http_ok(live):  # it exited with its resource: a Deployment restarts it
            print(operator.tail(20))
            operator.stop()
            operator.start()
        polled = {name: emulator_requests(emulator, name) for name in names}
        again = published(cp, emulator, "10.65.1.1")
        wait_requests(emulator, again, 3)
        still = {n: emulator_requests(emulator, n) - c for n, c in polled.items()}
        assert not any(still.values()), f"poll loops outlived their DirectServices: {still}"
        assert missing(cp, dsvc_path(NAMESPACE, names[0]))
    finally:
        print(operator.tail(60))
        operator.stop()
