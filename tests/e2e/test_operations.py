"""What an operator of the operator sees: Prometheus metrics, scraped over HTTP."""

from __future__ import annotations

import secrets

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import (
    apply,
    clear_faults_of,
    directservice,
    eventually,
    health,
    pai_eas,
    wait_for_count,
)

pytestmark = pytest.mark.e2e


def _samples(op: OperatorProcess) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(op.metrics_text()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def _value(op: OperatorProcess, metric: str, **labels: str) -> float | None:
    return _samples(op).get((metric, frozenset(labels.items())))


def _count(op: OperatorProcess, metric: str, **labels: str) -> float:
    """A counter's value, 0 before its first increment."""
    return _value(op, metric, **labels) or 0.0


WRITES = "directservice_api_writes_total"
DISCOVERIES = "directservice_discovery_requests_total"


def test_metrics_follow_discovery_and_publishing(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    namespace: str,
) -> None:
    eas = f"metrics_{secrets.token_hex(4)}"
    emulator.set_instances(
        eas,
        [
            {"ip": "10.30.0.1", "port": 8000, "weight": 100},
            {"ip": "10.30.0.2", "port": 8000, "weight": 0},
        ],
    )
    # The counters are the session operator's: this test checks what it adds to them.
    creates_before = _count(operator, WRITES, kind="EndpointSlice", verb="create")
    ok_before = _count(operator, DISCOVERIES, provider="paiEas", result="ok")
    apply(control_plane, directservice(namespace, "metrics", pai_eas(emulator.url, eas)))
    ident = {"namespace": namespace, "name": "metrics"}
    eventually(
        "ready gauge", lambda: _value(operator, "directservice_ready_endpoints", **ident) == 1, 15
    )
    assert _value(operator, "directservice_total_endpoints", **ident) == 2
    fresh = _value(operator, "directservice_seconds_since_last_success", **ident)
    assert fresh is not None and 0 <= fresh < 5
    assert _count(operator, WRITES, kind="EndpointSlice", verb="create") >= creates_before + 1
    assert _count(operator, DISCOVERIES, provider="paiEas", result="ok") >= ok_before + 1
    assert _samples(operator).get(
        ("directservice_discovery_duration_seconds_count", frozenset({("provider", "paiEas")}))
    )

    errors_before = _count(operator, DISCOVERIES, provider="paiEas", result="ServerError")
    emulator.add_fault("status", service=eas, status=503)
    try:
        wait_for_count(
            "a ServerError count",
            lambda: _count(operator, DISCOVERIES, provider="paiEas", result="ServerError"),
            errors_before + 1,
            15,
        )
        eventually(
            "the condition",
            lambda: health(control_plane, namespace, "metrics").get("reason") == "ServerError",
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
        clear_faults_of(emulator, eas)
