"""The per-DirectService gauges: a series appears once set, carries the DirectService's
namespace and name, and goes when the DirectService is forgotten."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from directservice.obs import metrics

pytestmark = pytest.mark.unit


def value(name: str, namespace: str, service: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, {"namespace": namespace, "name": service})


def test_a_gauge_is_exported_once_set_and_forgotten_with_its_service() -> None:
    metrics.record_success("m-ns", "svc-a", ready=3, total=5, dropped=1)
    metrics.DISCOVERY_STALE.set("m-ns", "svc-b", 1)
    assert value("directservice_ready_endpoints", "m-ns", "svc-a") == 3
    assert value("directservice_total_endpoints", "m-ns", "svc-a") == 5
    assert value("directservice_dropped_entries", "m-ns", "svc-a") == 1
    assert value("directservice_discovery_stale", "m-ns", "svc-b") == 1
    # Never set for svc-a: not exported as 0, not exported at all.
    assert value("directservice_discovery_stale", "m-ns", "svc-a") is None
    assert value("directservice_ready_endpoints", "m-ns", "svc-b") is None
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# HELP directservice_ready_endpoints Ready endpoints published" in text
    assert 'directservice_ready_endpoints{name="svc-a",namespace="m-ns"} 3.0' in text

    metrics.READY_ENDPOINTS.set("m-ns", "svc-a", 4)
    assert value("directservice_ready_endpoints", "m-ns", "svc-a") == 4
    metrics.forget("m-ns", "svc-a")
    assert value("directservice_ready_endpoints", "m-ns", "svc-a") is None
    assert value("directservice_discovery_stale", "m-ns", "svc-b") == 1  # another's stays
    metrics.forget("m-ns", "svc-b")
    assert value("directservice_discovery_stale", "m-ns", "svc-b") is None
