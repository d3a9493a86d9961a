"""kopf's own writes: one PATCH per DirectService (its finalizer), none per spec edit.

What kopf last handled of each object is kept in the operator's memory, not in an
annotation, so creating a DirectService costs one PATCH of the object and an edit of its
spec none. The edit still wakes the poll loop at once: with a one-hour interval, the new
answer is published only because of it. Counted by the API server's own
apiserver_request_total, on a control plane of this module's own.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from faultkit import dsvc_path
from support import create, directservice, eventually, pai_eas, patch, wait_published

pytestmark = pytest.mark.e2e

NAMESPACE = "kopf-writes"
PATCHES = re.compile(
    r'^apiserver_request_total\{(?=[^}]*resource="directservices")(?=[^}]*subresource="")'
    r'(?=[^}]*verb="PATCH")[^}]*\} (\S+)$',
    re.M,
)


def object_patches(cp: ControlPlane) -> int:
    """PATCHes of DirectService objects (not their status) the API server has served."""
    text = cp.request("GET", "/metrics")
    assert isinstance(text, str)
    return sum(int(float(value)) for value in PATCHES.findall(text))


def test_kopf_patches_a_directservice_once_and_an_edit_still_wakes_its_poll(
    own_cluster: ControlPlane, emulator: EmulatorThread, tmp_path: Path
) -> None:
    cp = own_cluster
    operator = OperatorProcess(
        cp.kubeconfig, tmp_path / "operator.log", extra_args=["-n", NAMESPACE]
    )
    operator.start()
    try:
        before = object_patches(cp)
        emulator.set_instances("edited", [{"ip": "10.66.0.1", "port": 80}])
        provider = pai_eas(emulator.url, "edited")
        create(cp, directservice(NAMESPACE, "edited", provider, pollInterval="1h"))
        wait_published(cp, NAMESPACE, "edited", {("10.66.0.1", 80)})  # within the start jitter
        body = eventually(
            "kopf's finalizer",
            lambda: (
                (b := cp.request("GET", dsvc_path(NAMESPACE, "edited")))
                and b["metadata"].get("finalizers")
                and b
            ),
            20,
        )
        assert body["metadata"]["finalizers"] == ["directservice.io/cleanup"]
        annotations = body["metadata"].get("annotations") or {}
        assert not any(key.startswith("directservice.io/") for key in annotations), annotations
        assert object_patches(cp) - before == 1  # the finalizer, nothing else

        grown = [{"ip": "10.66.0.1", "port": 80}, {"ip": "10.66.0.2", "port": 80}]
        emulator.set_instances("edited", grown)  # a growth: the shrink guard lets it through
        patch(cp, "dsvc", NAMESPACE, "edited", {"spec": {"drainSeconds": 0}})
        both = {("10.66.0.1", 80), ("10.66.0.2", 80)}
        wait_published(cp, NAMESPACE, "edited", both, timeout=15)  # not in 1 h
        assert object_patches(cp) - before == 2  # the edit itself, by kubectl
        after = cp.request("GET", dsvc_path(NAMESPACE, "edited"))["metadata"]
        assert not any(k.startswith("directservice.io/") for k in after.get("annotations") or {})
    finally:
        print(operator.tail(40))
        operator.stop()
