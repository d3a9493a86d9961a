"""Helpers of the traffic tests: instances in the network lab, reached through CoreDNS.

The fixtures built on them (traffic_dns, traffic_operator, instances) are in
tests/e2e/conftest.py; the tests in tests/e2e/test_traffic.py and test_draining.py.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.netlab import InstanceServer
from devenv.operatorproc import OperatorProcess
from directservice.client import CallFailed, DirectClient
from support import apply, events_with, eventually, slices

MODEL = "scorer"  # the model service the instances serve: POST /api/predict/scorer
PREDICT = f"/api/predict/{MODEL}"
PORT = 8000
TTL = 1  # the traffic tests' CoreDNS: the removal bound includes the TTL, so keep it short
# The checks of the tests: 1 s apart, 900 ms each (a starved test machine must not flap
# them), out after 2 failures, back after 2.
CHECK: dict[str, Any] = {"type": "tcp", "interval": "1s", "timeout": "900ms"}
CHECK |= {"unhealthyThreshold": 2, "healthyThreshold": 2}
REMOVAL_BOUND = 2 * 1.0 + 0.9 + TTL
RETURN_BOUND = 2 * 1.0 + TTL
SLACK = 2.0  # the write, the watch to CoreDNS and a busy 2-core machine


def static(servers: list[InstanceServer], drained: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A static provider listing `servers`; those whose IP is in `drained` have weight 0."""
    listed = [
        {"ip": ip, "port": port, "weight": 0 if ip in drained else 100}
        for ip, port in (server.address for server in servers)
    ]
    return {"static": {"instances": listed}}


def publish(
    cp: ControlPlane, namespace: str, name: str, provider: dict[str, Any], **spec: Any
) -> None:
    """Create or replace a DirectService polled every second."""
    apply(
        cp,
        {
            "apiVersion": "directservice.io/v1alpha1",
            "kind": "DirectService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"provider": provider, "pollInterval": "1s", **spec},
        },
    )


def wait_first_report(cp: ControlPlane, namespace: str, name: str, timeout: float = 20.0) -> None:
    """Until the first pass has posted its Event (EndpointsPublished, the last of its writes).
    The slices are written before the status and the Event, so DNS can answer while the pass
    is still writing."""
    eventually(
        f"the first report of {name}",
        lambda: bool(events_with(cp, namespace, name, "EndpointsPublished")),
        timeout,
        0.05,
    )


def fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local."


def ips(servers: list[InstanceServer]) -> set[str]:
    return {s.address[0] for s in servers}


def wait_dns(
    dns: CoreDNS, name: str, namespace: str, expected: set[str], timeout: float = 20.0
) -> float:
    """Seconds until the Service's A records are exactly `expected`."""
    start = time.monotonic()
    eventually(
        f"A records {sorted(expected)}",
        lambda: a_records(dns.address, fqdn(name, namespace)) == expected,
        timeout,
        0.05,
    )
    return time.monotonic() - start


def slice_writes(operator: OperatorProcess) -> float:
    text = operator.metrics_text()
    found = re.findall(
        r'^directservice_api_writes_total\{kind="EndpointSlice",verb="\w+"\} (\S+)$', text, re.M
    )
    return sum(float(v) for v in found)


def all_writes(operator: OperatorProcess) -> float:
    found = re.findall(
        r"^directservice_api_writes_total\{[^}]*\} (\S+)$", operator.metrics_text(), re.M
    )
    return sum(float(v) for v in found)


def writes_by_kind(operator: OperatorProcess) -> dict[str, float]:
    """directservice_api_writes_total per kind and verb, e.g. {"EndpointSlice/replace": 2}."""
    found = re.findall(
        r'^directservice_api_writes_total\{kind="(\w+)",verb="(\w+)"\} (\S+)$',
        operator.metrics_text(),
        re.M,
    )
    return {f"{kind}/{verb}": float(value) for kind, verb, value in found}


def health_checks(operator: OperatorProcess) -> float:
    found = re.findall(
        r"^directservice_health_checks_total\{[^}]*\} (\S+)$", operator.metrics_text(), re.M
    )
    return sum(float(v) for v in found)


def endpoint_conditions(cp: ControlPlane, namespace: str, name: str) -> dict[str, dict[str, Any]]:
    """Per address: its conditions and hostname, as published."""
    return {
        e["addresses"][0]: {**e["conditions"], "hostname": e.get("hostname")}
        for s in slices(cp, namespace, name)
        for e in s.get("endpoints") or []
    }


class SteadyCaller:
    """Calls the service at a steady pace from a thread, counting what failed."""

    def __init__(self, client: DirectClient, pace: float = 0.05) -> None:
        self.client, self.pace = client, pace
        self.calls = self.errors = self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SteadyCaller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.pace):  # the load's pace, not a wait for a result
            self.calls += 1
            try:
                answer = self.client.predict({"q": self.calls}, timeout=1.0)
            except CallFailed:
                self.errors += 1
                continue
            self.retried += answer.attempts > 1
