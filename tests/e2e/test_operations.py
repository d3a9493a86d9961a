"""What an operator of the operator sees: Prometheus metrics, scraped over HTTP."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clusterhelpers import apply, condition, eventually, get_json
from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.e2e


def _samples(op: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(op.metrics_text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(op: OperatorProcess, metric: str, **labels: str) -> float | None:
    return _samples(op).get((metric, frozenset(labels.items())))


def test_metrics_follow_discovery_and_publishing(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    emulator.set_instances(
        "metrics_svc",
        [
            {"ip": "10.30.0.1", "port": 8000, "weight": 100},
            {"ip": "10.30.0.2", "port": 8000, "weight": 0},
        ],
    )
    dsvc = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": "metrics", "namespace": namespace},
        "spec": {
            "provider": {"paiEas": {"endpoint": emulator.url, "serviceName": "metrics_svc"}},
            "pollInterval": "1s",
        },
    }
    apply(control_plane, dsvc)
    ident = {"namespace": namespace, "name": "metrics"}
    eventually(
        "ready gauge", lambda: _value(operator, "directservice_ready_endpoints", **ident) == 1, 15
    )
    assert _value(operator, "directservice_total_endpoints", **ident) == 2
    fresh = _value(operator, "directservice_seconds_since_last_success", **ident)
    assert fresh is not None and 0 <= fresh < 5
    assert (
        _value(operator, "directservice_api_writes_total", kind="EndpointSlice", verb="create") or 0
    ) >= 1
    ok = _value(operator, "directservice_discovery_requests_total", provider="paiEas", result="ok")
    assert ok is not None and ok >= 1
    assert _samples(operator).get(
        ("directservice_discovery_duration_seconds_count", frozenset({("provider", "paiEas")}))
    )

    emulator.add_fault("status", service="metrics_svc", status=503)
    try:
        eventually(
            "a ServerError count",
            lambda: _value(
                operator, "directservice_discovery_requests_total",
                provider="paiEas", result="ServerError",
            ),
            15,
        )  # fmt: skip
        eventually(
            "the condition",
            lambda: (
                condition(
                    get_json(control_plane, "dsvc", "metrics", "-n", namespace), "DiscoveryHealthy"
                ).get("reason")
                == "ServerError"
            ),
            15,
        )
        # Stale grows while discovery fails; the published gauges keep the last good answer.
        eventually(
            "staleness",
            lambda: (
                (_value(operator, "directservice_seconds_since_last_success", **ident) or 0) > 2
            ),
            15,
        )
        assert _value(operator, "directservice_ready_endpoints", **ident) == 1
    finally:
        emulator.clear_faults()
