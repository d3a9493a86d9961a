"""Traffic end to end: real instances in network namespaces, reached by name through CoreDNS.

Each instance is an HTTP server in a network namespace of the test's own lab (routed
10.250.x addresses); the operator health-checks them from the root namespace, as a pod
would, and the reference client calls them through CoreDNS alone. Every address that
receives traffic belongs to the lab.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.netlab import Host, InstanceServer, NetLab
from devenv.operatorproc import OperatorProcess
from devenv.tools import Tools
from directservice.client import CallFailed, DirectClient
from support import (
    apply,
    condition,
    discovery_count,
    eventually,
    get_dsvc,
    patch,
    running,
    slices,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "traffic"
MODEL = "scorer"  # the model service the instances serve: POST /api/predict/scorer
PREDICT = f"/api/predict/{MODEL}"
PORT = 8000
TTL = 1  # this module's CoreDNS: the removal bound includes the TTL, so keep it short
# The checks of the tests below: 1 s apart, 500 ms each, out after 2 failures, back after 2.
CHECK = {"type": "tcp", "interval": "1s", "timeout": "500ms"}
CHECK |= {"unhealthyThreshold": 2, "healthyThreshold": 2}
REMOVAL_BOUND = 2 * 1.0 + 0.5 + TTL
RETURN_BOUND = 2 * 1.0 + TTL
SLACK = 2.0  # the write, the watch to CoreDNS and a busy 2-core machine


@pytest.fixture(scope="module")
def dns(own_cluster: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    with CoreDNS(own_cluster, binary=tools.coredns, ttl=TTL) as server:
        yield server


@pytest.fixture(scope="module")
def operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("traffic")) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc):
        yield proc


@pytest.fixture
def servers(netlab: NetLab) -> Iterator[list[InstanceServer]]:
    """Three instances, one per host, each answering with its own identity."""
    hosts: list[Host] = [netlab.add_host() for _ in range(3)]
    started = [host.serve(MODEL, PORT, identity=f"scorer-{n}") for n, host in enumerate(hosts)]
    yield started
    for host in hosts:
        netlab.remove_host(host)


def static(servers: list[InstanceServer], drained: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A static provider listing `servers`; those whose IP is in `drained` have weight 0."""
    listed = [
        {"ip": ip, "port": port, "weight": 0 if ip in drained else 100}
        for ip, port in (server.address for server in servers)
    ]
    return {"static": {"instances": listed}}


def publish(cp: ControlPlane, name: str, provider: dict[str, Any], **spec: Any) -> None:
    apply(
        cp,
        {
            "apiVersion": "directservice.io/v1alpha1",
            "kind": "DirectService",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"provider": provider, "pollInterval": "1s", **spec},
        },
    )


def fqdn(name: str) -> str:
    return f"{name}.{NAMESPACE}.svc.cluster.local."


def ips(servers: list[InstanceServer]) -> set[str]:
    return {s.address[0] for s in servers}


def wait_dns(dns: CoreDNS, name: str, expected: set[str], timeout: float = 20.0) -> float:
    """Seconds until the Service's A records are exactly `expected`."""
    start = time.monotonic()
    eventually(
        f"A records {sorted(expected)}",
        lambda: a_records(dns.address, fqdn(name)) == expected,
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


def health_checks(operator: OperatorProcess) -> float:
    found = re.findall(
        r"^directservice_health_checks_total\{[^}]*\} (\S+)$", operator.metrics_text(), re.M
    )
    return sum(float(v) for v in found)


def endpoint_conditions(cp: ControlPlane, name: str) -> dict[str, dict[str, Any]]:
    return {
        e["addresses"][0]: {**e["conditions"], "hostname": e.get("hostname")}
        for s in slices(cp, NAMESPACE, name)
        for e in s.get("endpoints") or []
    }


def test_the_client_reaches_every_instance_by_the_service_and_each_by_its_name(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
) -> None:
    publish(own_cluster, "reach", static(servers))
    wait_dns(dns, "reach", ips(servers))

    # SRV targets are the per-instance names, and each resolves to its own instance.
    srv = srv_records(dns.address, f"_http._tcp.{fqdn('reach')}")
    assert srv == {(ip, PORT) for ip in ips(servers)}
    for server in servers:
        ip = server.address[0]
        assert a_records(dns.address, f"{ip.replace('.', '-')}.{fqdn('reach')}") == {ip}

    client = DirectClient(
        "reach", NAMESPACE, dns_server=dns.address, token="eas-token", timeout=2.0, path=PREDICT
    )
    answers = [client.predict({"n": n}) for n in range(30)]
    assert all(a.status == 200 and a.attempts == 1 for a in answers)
    assert {a.json()["identity"] for a in answers} == {"scorer-0", "scorer-1", "scorer-2"}
    assert {a.json()["authorization"] for a in answers} == {"eas-token"}
    # Equal weights: the round robin gives each instance exactly a third.
    assert sorted(s.requests(PREDICT) for s in servers) == [10, 10, 10]


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


def test_a_killed_instance_leaves_dns_within_the_bound_and_calls_keep_succeeding(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
) -> None:
    publish(own_cluster, "kill", static(servers), healthCheck=CHECK)
    wait_dns(dns, "kill", ips(servers))
    victim = servers[1]
    client = DirectClient("kill", NAMESPACE, dns_server=dns.address, timeout=1.0, path=PREDICT)
    writes_before, all_before = slice_writes(operator), all_writes(operator)

    with SteadyCaller(client) as caller:
        victim.kill()
        gone = wait_dns(dns, "kill", ips(servers) - {victim.address[0]}, REMOVAL_BOUND + SLACK)
        removal_writes = slice_writes(operator) - writes_before
        victim.restart()
        back = wait_dns(dns, "kill", ips(servers), RETURN_BOUND + SLACK)
        calls_at_return = caller.calls

    print(
        f"removed from DNS in {gone:.2f}s (bound {REMOVAL_BOUND}s), back in {back:.2f}s "
        f"(bound {RETURN_BOUND}s); {caller.calls} calls, {caller.errors} errors, "
        f"{caller.retried} retried"
    )
    assert removal_writes == 1, "one slice write for the transition, none per check"
    assert caller.errors == 0, "every call that met the dead instance was retried elsewhere"
    assert calls_at_return > 20
    # Discovery still lists it all along: only the checks took it out.
    assert get_dsvc(own_cluster, NAMESPACE, "kill")["status"]["readyEndpoints"] == 3
    assert slice_writes(operator) - writes_before == 2  # out, and back in
    assert all_writes(operator) - all_before == 2  # no status, no Event


def test_all_instances_unreachable_is_a_panic_that_keeps_them_published(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
    netlab: NetLab,
) -> None:
    publish(own_cluster, "panic", static(servers), healthCheck=CHECK)
    wait_dns(dns, "panic", ips(servers))
    hosts = [server.host for server in servers]

    for host in hosts:
        host.link_down()

    def panicking() -> dict[str, Any] | None:
        cond = condition(get_dsvc(own_cluster, NAMESPACE, "panic"), "HealthPanic")
        return cond if cond.get("status") == "True" else None

    cond = eventually("HealthPanic=True", panicking, 15)
    assert cond["reason"] == "HealthPanic"
    assert a_records(dns.address, fqdn("panic")) == ips(servers), "all stay published"

    for host in hosts:
        host.link_up()

    def calm() -> bool:
        return (
            condition(get_dsvc(own_cluster, NAMESPACE, "panic"), "HealthPanic").get("status")
            == "False"
        )

    eventually("HealthPanic=False", calm, 15)
    wait_dns(dns, "panic", ips(servers))


def test_weight_zero_drains_and_a_removed_instance_terminates_then_goes(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
) -> None:
    first, second, third = (s.address[0] for s in servers)
    publish(own_cluster, "drain", static(servers, frozenset({second})), drainSeconds=3)
    wait_dns(dns, "drain", {first, third})
    drained = endpoint_conditions(own_cluster, "drain")[second]
    assert (drained["ready"], drained["serving"], drained["terminating"]) == (False, True, False)

    kept = static(servers[:2], frozenset({second}))
    patch(own_cluster, "directservice", NAMESPACE, "drain", {"spec": {"provider": kept}})
    wait_dns(dns, "drain", {first})

    def terminating() -> dict[str, Any] | None:
        found = endpoint_conditions(own_cluster, "drain").get(third)
        return found if found and found["terminating"] else None

    leaving = eventually("the removed instance terminating", terminating, 10, 0.05)
    assert (leaving["ready"], leaving["serving"]) == (False, False)
    eventually(
        "the removed instance deleted",
        lambda: third not in endpoint_conditions(own_cluster, "drain"),
        10,
    )


def test_an_exclusion_takes_one_instance_out_and_survives_a_restart(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
) -> None:
    first, second, third = (s.address[0] for s in servers)
    publish(
        own_cluster, "exclude", static(servers), exclude=[f"{second}:{PORT}"], healthCheck=CHECK
    )
    wait_dns(dns, "exclude", {first, third})
    eventually(
        "excludedEndpoints",
        lambda: (
            get_dsvc(own_cluster, NAMESPACE, "exclude").get("status", {}).get("excludedEndpoints")
        ),
        10,
    )
    status = get_dsvc(own_cluster, NAMESPACE, "exclude")["status"]
    assert status["excludedEndpoints"] == [f"{second}:{PORT}"]
    assert (status["readyEndpoints"], status["totalEndpoints"]) == (2, 3)
    excluded = endpoint_conditions(own_cluster, "exclude")[second]
    assert (excluded["ready"], excluded["serving"], excluded["terminating"]) == (
        False,
        False,
        False,
    )
    assert servers[1].requests() == 0, "an excluded instance gets no health checks either"

    operator.stop()
    operator.start()

    # Three polls after the restart, and three rounds of checks: still out, nothing written.
    polls = discovery_count(operator, "static", "ok")
    eventually("3 polls", lambda: discovery_count(operator, "static", "ok") >= polls + 3, 20)
    eventually("checks", lambda: health_checks(operator) >= 6, 20)
    assert a_records(dns.address, fqdn("exclude")) == {first, third}
    assert slice_writes(operator) == 0
    assert servers[1].requests() == 0


def test_with_health_checks_on_a_steady_state_writes_nothing(
    own_cluster: ControlPlane,
    dns: CoreDNS,
    operator: OperatorProcess,
    servers: list[InstanceServer],
) -> None:
    publish(own_cluster, "steady", static(servers), healthCheck=CHECK)
    wait_dns(dns, "steady", ips(servers))
    eventually(
        "status written",
        lambda: (
            get_dsvc(own_cluster, NAMESPACE, "steady").get("status", {}).get("readyEndpoints") == 3
        ),
        10,
    )
    checks, writes = health_checks(operator), all_writes(operator)

    # Twenty rounds of checks of the three instances: at least 60 checks, counted.
    eventually("60 more checks", lambda: health_checks(operator) >= checks + 60, 40)

    assert all_writes(operator) == writes
