"""The poll loop's error boundary, end to end: an unexpected exception in discovery or in
publishing gives InternalError, leaves the slices byte for byte as they were, keeps polling,
and the next good answer clears the condition.

The operator here is the real one started through hooks/faultyoperator.py, whose two hooks
fire only on a marker the emulator serves. It runs on a control plane of its own, so no other
operator reconciles its objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from devenv.paths import DEV_ROOT, OPERATOR_ROOT
from directservice.emulator.runner import EmulatorThread
from support import (
    create,
    directservice,
    events_with,
    pai_eas,
    running,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "faults"
MARKER = "x-test-fault"
HOOKS = Path(__file__).resolve().parent / "hooks"


@pytest.fixture(scope="module")
def faulty_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("faulty-operator") / "operator.log"
    path = f"{OPERATOR_ROOT}:{DEV_ROOT}:{HOOKS}"
    proc = OperatorProcess(
        own_cluster.kubeconfig,
        log,
        extra_args=["-n", NAMESPACE],
        env={"PYTHONPATH": path},
        module="faultyoperator",
    )
    with running(proc, tail=60) as started:
        yield started


def internal_errors(operator: OperatorProcess, name: str) -> float:
    pattern = (
        rf'^directservice_internal_errors_total\{{name="{re.escape(name)}",'
        rf'namespace="{NAMESPACE}"\}} (\S+)$'
    )
    found = re.search(pattern, operator.metrics_text(), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def snapshot(cp: ControlPlane, name: str) -> list[dict[str, Any]]:
    return slices(cp, NAMESPACE, name)


@pytest.mark.parametrize("stage", ["discovery", "publish"])
def test_an_unexpected_exception_gives_internal_error_and_changes_nothing(
    own_cluster: ControlPlane,
    faulty_operator: OperatorProcess,
    emulator: EmulatorThread,
    stage: str,
) -> None:
    cp, name, service = own_cluster, f"boom-{stage}", f"boom_{stage}"
    good = [{"ip": "10.60.0.1", "port": 8000}, {"ip": "10.60.0.2", "port": 8000}]
    emulator.set_instances(service, good)
    create(cp, directservice(NAMESPACE, name, pai_eas(emulator.url, service)))
    wait_published(cp, NAMESPACE, name, {("10.60.0.1", 8000), ("10.60.0.2", 8000)})
    wait_health(cp, NAMESPACE, name, "True", "DiscoverySucceeded")
    before = snapshot(cp, name)

    # Switch the fault on: the answer also changes, so a write would show if one happened.
    changed = [*good, {"ip": "10.60.0.3", "port": 8000, "hostname": MARKER}]
    if stage == "discovery":
        emulator.set_instances(service, changed, correlative=[MARKER])
    else:
        emulator.set_instances(service, changed)
    dsvc = wait_health(cp, NAMESPACE, name, "False", "InternalError")
    message = next(
        c["message"] for c in dsvc["status"]["conditions"] if c["type"] == "DiscoveryHealthy"
    )
    assert message == f"RuntimeError: injected {stage} fault"
    assert dsvc["status"]["readyEndpoints"] == 2  # the last good count stays

    # The loop keeps polling (backing off): count two more faulty polls, then compare.
    polls = emulator.requests(service)["total"]
    wait_for_count("two more polls", lambda: emulator.requests(service)["total"], polls + 2, 30)
    assert snapshot(cp, name) == before  # byte for byte: nothing was written
    assert internal_errors(faulty_operator, name) >= 3
    assert (
        len(events_with(cp, NAMESPACE, name, "InternalError", "Warning")) == 1
    )  # one per transition
    assert "Traceback" in faulty_operator.tail(400)
    assert "Will retry" not in faulty_operator.tail(400)  # kopf never saw the daemon fail

    # The next good answer clears the condition and publishes it.
    emulator.set_instances(service, [*good, {"ip": "10.60.0.3", "port": 8000}])
    wait_health(cp, NAMESPACE, name, "True", "DiscoverySucceeded", timeout=40)
    wait_published(
        cp, NAMESPACE, name, {("10.60.0.1", 8000), ("10.60.0.2", 8000), ("10.60.0.3", 8000)}
    )
