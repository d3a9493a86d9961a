"""Small helpers shared by the fault tests (test_chaos, test_outages, test_discovery_faults,
test_deletion): metric sums, raw merge patches, per-namespace listings and write checks."""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.request
from typing import Any

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from support import DSVC_API

WRITES = "directservice_api_writes_total"
INTERNAL_ERRORS = "directservice_internal_errors_total"


def metric_total(operator: OperatorProcess, name: str) -> float:
    """The sum of every series of metric `name` the operator exports (0 if none)."""
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$"
    return sum(float(v) for v in re.findall(pattern, operator.metrics_text(), re.MULTILINE))


def merge_patch(cp: ControlPlane, path: str, body: dict[str, Any]) -> None:
    """A JSON merge patch straight to the API server: no kubectl process per edit, which
    counts when a test makes dozens on a shared machine."""
    headers = {
        "Authorization": f"Bearer {cp.admin_token}",
        "Content-Type": "application/merge-patch+json",
    }
    request = urllib.request.Request(
        cp.server + path, json.dumps(body).encode(), headers, method="PATCH"
    )
    context = ssl.create_default_context(cafile=str(cp.ca_file))
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        response.read()


def dsvc_path(namespace: str, name: str = "") -> str:
    return f"{DSVC_API}/namespaces/{namespace}/directservices" + (f"/{name}" if name else "")


def missing(cp: ControlPlane, path: str) -> bool:
    """True once GET `path` answers 404."""
    try:
        cp.request("GET", path)
    except urllib.error.HTTPError as err:
        return err.code == 404
    return False


def listed(cp: ControlPlane, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cp.request("GET", path)["items"]
    return items


def published_versions(cp: ControlPlane, namespace: str) -> dict[str, str]:
    """resourceVersion of every DirectService, Service and EndpointSlice in `namespace`:
    anything the operator writes there (status included) changes it."""
    paths = {
        "DirectService": dsvc_path(namespace),
        "Service": f"/api/v1/namespaces/{namespace}/services",
        "EndpointSlice": f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
    }
    return {
        f"{kind}/{item['metadata']['name']}": item["metadata"]["resourceVersion"]
        for kind, path in paths.items()
        for item in listed(cp, path)
    }


def log_offset(operator: OperatorProcess) -> int:
    """Where the operator's log ends now; `log_since` reads what comes after."""
    return operator.log_path.stat().st_size


def log_since(operator: OperatorProcess, offset: int) -> str:
    with operator.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")
