"""The operator survives its own restart cheaply: it adopts its slices and rewrites nothing.

The operator restarted here is one of the test's own, watching only its namespace on a
control plane of its own: the session's operator, cluster-wide, would otherwise reconcile
the same objects (and hide whatever the restarted one did or did not write), and it is
never stopped by a test.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    apply,
    directservice,
    eventually,
    get_dsvc,
    health,
    pai_eas,
    resource_versions,
    running,
    wait_requests,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "restart"


@pytest.fixture
def own_operator(own_cluster: ControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    """An operator for NAMESPACE only, started here; the test restarts it."""
    log = tmp_path / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc):
        yield proc


def test_restart_adopts_slices_without_writes(
    own_cluster: ControlPlane, own_operator: OperatorProcess, emulator: EmulatorThread
) -> None:
    cp = own_cluster
    # 250 instances at 100 per slice: three slices to adopt.
    eas = f"restart_{secrets.token_hex(4)}"
    instances = [{"ip": f"10.40.{i // 200}.{i % 200 + 1}", "port": 9000} for i in range(250)]
    emulator.set_instances(eas, instances)
    apply(cp, directservice(NAMESPACE, "restart", pai_eas(emulator.url, eas)))

    def synced() -> bool:
        total = (get_dsvc(cp, NAMESPACE, "restart").get("status") or {}).get("totalEndpoints")
        return total == 250 and health(cp, NAMESPACE, "restart").get("status") == "True"

    eventually("all 250 published", synced, 20)
    wait_requests(emulator, eas, 2)  # what the polls so far had to write is written
    before = resource_versions(cp, NAMESPACE)
    assert sum(k.startswith("EndpointSlice/") for k in before) == 3

    own_operator.stop()
    own_operator.start()
    # Four polls by the new process: the first three have written whatever they would.
    wait_requests(emulator, eas, 4)
    assert resource_versions(cp, NAMESPACE) == before
