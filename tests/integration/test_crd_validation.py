"""The CRD's validation as the real API server applies it (CEL rules included)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from support import example, get_json

pytestmark = pytest.mark.integration


def _attempt(cp: ControlPlane, obj: dict[str, Any]) -> tuple[int, str]:
    result = cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)
    return result.returncode, result.stderr


def _base(namespace: str) -> dict[str, Any]:
    obj = copy.deepcopy(example("01-pai-eas.yaml"))
    obj["metadata"]["namespace"] = namespace
    return obj


def test_example_is_accepted_and_defaulted(control_plane: ControlPlane, namespace: str) -> None:
    obj = _base(namespace)
    del obj["spec"]["pollInterval"]
    del obj["spec"]["port"]
    result = control_plane.kubectl("create", "-f", "-", "-o", "json", input=json.dumps(obj))
    created = json.loads(result.stdout)
    assert created["spec"]["pollInterval"] == "5s"
    assert created["spec"]["port"]["name"] == "http"
    assert get_json(control_plane, "dsvc", "mnist", "-n", namespace)["kind"] == "DirectService"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["spec"].update(pollInterval="500ms"), "must be between 1s and 1h"),
        (lambda o: o["spec"].update(pollInterval="soon"), "pollInterval"),
        (lambda o: o["metadata"].update(name="mnist.v2"), "DNS-1035"),
        (lambda o: o["spec"].update(provider={}), "provider"),
        (
            lambda o: o["spec"]["provider"]["paiEas"].update(endpoint="ftp://x"),
            "spec.provider.paiEas.endpoint",
        ),
        (lambda o: o["spec"].update(port={"name": "HTTP"}), "spec.port.name"),
        (lambda o: o["spec"].update(maxEndpointsPerSlice=5000), "maxEndpointsPerSlice"),
    ],
    ids=["interval-too-short", "interval-garbage", "name-not-dns-1035", "no-provider",
         "endpoint-not-http", "port-name-uppercase", "slice-too-large"],
)  # fmt: skip
def test_invalid_directservices_are_refused_with_a_clear_message(
    control_plane: ControlPlane, namespace: str, mutate: Any, message: str
) -> None:
    obj = _base(namespace)
    mutate(obj)
    code, stderr = _attempt(control_plane, obj)
    assert code != 0
    assert message in stderr, stderr
