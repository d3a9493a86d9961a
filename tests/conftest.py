"""Shared fixtures: one real control plane (etcd + kube-apiserver) and one CoreDNS per session.

Binaries come from tools.resolve(), which builds whatever is missing: a missing tool makes
the session slow once, never skipped.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.housekeeping import namespaced_collections, purge_namespace
from devenv.tools import Tools, resolve
from directservice.publish.apiclient import ApiEndpoint

TIERS = ("unit", "integration", "e2e")
# The network lab (network namespaces as instance hosts) for tests that send real traffic.
pytest_plugins = ["netlab_fixture"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the tier of its folder, so `pytest -m <tier>` never misses one."""
    for item in items:
        tier = Path(item.path).parent.name
        if tier in TIERS and not item.get_closest_marker(tier):
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def tools() -> Tools:
    return resolve()


@pytest.fixture(scope="session")
def control_plane(tools: Tools) -> Iterator[ControlPlane]:
    with ControlPlane(tools) as cp:
        yield cp


@pytest.fixture(scope="module")
def own_cluster(request: pytest.FixtureRequest, tools: Tools) -> Iterator[ControlPlane]:
    """A control plane for one test module alone, for tests that restart the API server,
    swap the CRD, or must not be reconciled by the session-wide operator (which watches
    every namespace of `control_plane`). The module's NAMESPACE, if it names one, exists."""
    with ControlPlane(tools) as cp:
        namespace = getattr(request.module, "NAMESPACE", None)
        if namespace:
            cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        yield cp


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[ApiClient]:
    """A kubernetes.client.ApiClient acting as cluster admin."""
    with control_plane.api_client() as client:
        yield client


@pytest.fixture(scope="session")
def api_endpoint(control_plane: ControlPlane) -> ApiEndpoint:
    """Where and as whom KubeWriter calls the control plane: cluster admin."""
    return control_plane.api_endpoint()


@pytest.fixture(scope="session")
def coredns(control_plane: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    """CoreDNS answering cluster.local from the control plane, TTL 5 s."""
    with CoreDNS(control_plane, binary=tools.coredns) as dns:
        yield dns


@pytest.fixture(scope="session")
def _namespaced_collections(control_plane: ControlPlane) -> list[str]:
    # Discovered once: the resource types (CRDs included) exist from the start.
    return namespaced_collections(control_plane)


@pytest.fixture
def namespace(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    _namespaced_collections: list[str],
) -> Iterator[str]:
    """A fresh namespace named after the test, really deleted afterwards.

    With no controller-manager a deleted namespace would stay Terminating forever and its
    objects (DirectServices a session-wide operator keeps reconciling, Services CoreDNS keeps
    serving) would pile up, so teardown empties and finalizes it as the namespace controller
    would. Objects holding a finalizer linger until their owner (the operator) releases them.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    control_plane.request("POST", "/api/v1/namespaces", body)
    yield name
    purge_namespace(control_plane, name, _namespaced_collections)
