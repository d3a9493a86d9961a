"""Traffic end to end: real instances in network namespaces, reached by name through CoreDNS.

Each instance is an HTTP server in a network namespace of the run's own lab (routed
10.250.x addresses); the operator health-checks them from the root namespace, as a pod
would, and the reference client calls them through CoreDNS alone. Every address that
receives traffic belongs to the lab.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import dns.message
import dns.query
import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records, srv_records
from devenv.netlab import InstanceServer, NetLab
from devenv.operatorproc import OperatorProcess
from directservice.client import DirectClient, EndpointSliceWeights, KubeApi
from support import condition, eventually, get_dsvc
from traffic import (
    CHECK,
    PORT,
    PREDICT,
    REMOVAL_BOUND,
    RETURN_BOUND,
    SLACK,
    SteadyCaller,
    all_writes,
    fqdn,
    ips,
    publish,
    slice_writes,
    static,
    wait_dns,
    wait_first_report,
    writes_by_kind,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "traffic"


def srv_targets(server: CoreDNS, name: str) -> set[str]:
    query = dns.message.make_query(f"_http._tcp.{fqdn(name, NAMESPACE)}", "SRV")
    answer = dns.query.udp(query, server.address[0], port=server.address[1], timeout=2.0)
    return {r.target.to_text() for rrset in answer.answer for r in rrset}


def test_the_client_reaches_every_instance_by_the_service_and_each_by_its_name(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    publish(own_cluster, NAMESPACE, "reach", static(instances))
    wait_dns(traffic_dns, "reach", NAMESPACE, ips(instances))

    # SRV targets are the per-instance names, and each resolves to its own instance.
    names = {ip: ip.replace(".", "-") for ip in ips(instances)}
    assert srv_targets(traffic_dns, "reach") == {
        f"{n}.{fqdn('reach', NAMESPACE)}" for n in names.values()
    }
    assert srv_records(traffic_dns.address, f"_http._tcp.{fqdn('reach', NAMESPACE)}") == {
        (ip, PORT) for ip in ips(instances)
    }
    for ip, name in names.items():
        assert a_records(traffic_dns.address, f"{name}.{fqdn('reach', NAMESPACE)}") == {ip}

    client = DirectClient(
        "reach", NAMESPACE, dns_server=traffic_dns.address, token="eas-token", path=PREDICT
    )
    answers = [client.predict({"n": n}) for n in range(30)]
    assert all(a.status == 200 and a.attempts == 1 for a in answers)
    assert {a.json()["identity"] for a in answers} == {"scorer-0", "scorer-1", "scorer-2"}
    assert {a.json()["authorization"] for a in answers} == {"eas-token"}
    # Equal weights: the round robin gives each instance exactly a third.
    assert sorted(s.requests(PREDICT) for s in instances) == [10, 10, 10]


def test_the_client_balances_by_the_published_weights_when_it_can_read_them(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    provider: dict[str, Any] = static(instances[:2])
    provider["static"]["instances"][0]["weight"] = 300
    publish(own_cluster, NAMESPACE, "weighted", provider)
    wait_dns(traffic_dns, "weighted", NAMESPACE, ips(instances[:2]))
    api = KubeApi(own_cluster.server, token=own_cluster.admin_token, ca_file=own_cluster.ca_file)
    weights = EndpointSliceWeights("weighted", NAMESPACE, api)
    client = DirectClient(
        "weighted", NAMESPACE, dns_server=traffic_dns.address, weights=weights, path=PREDICT
    )

    answered = Counter(client.predict({"n": n}).json()["identity"] for n in range(40))

    assert answered == {"scorer-0": 30, "scorer-1": 10}  # 300 : 100, exactly, per cycle
    assert weights.failures == 0


def test_a_killed_instance_leaves_dns_within_the_bound_and_calls_keep_succeeding(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    publish(own_cluster, NAMESPACE, "kill", static(instances), healthCheck=CHECK)
    wait_dns(traffic_dns, "kill", NAMESPACE, ips(instances))
    wait_first_report(own_cluster, NAMESPACE, "kill")  # its status and Events are not counted
    victim = instances[1]
    client = DirectClient(
        "kill", NAMESPACE, dns_server=traffic_dns.address, timeout=1.0, path=PREDICT
    )
    writes_before, all_before = slice_writes(traffic_operator), all_writes(traffic_operator)
    kinds_before = writes_by_kind(traffic_operator)

    with SteadyCaller(client) as caller:
        victim.kill()
        remaining = ips(instances) - {victim.address[0]}
        gone = wait_dns(traffic_dns, "kill", NAMESPACE, remaining, REMOVAL_BOUND + SLACK)
        removal_writes = slice_writes(traffic_operator) - writes_before
        victim.restart()
        back = wait_dns(traffic_dns, "kill", NAMESPACE, ips(instances), RETURN_BOUND + SLACK)

    print(
        f"removed from DNS in {gone:.2f}s (bound {REMOVAL_BOUND}s), back in {back:.2f}s "
        f"(bound {RETURN_BOUND}s); {caller.calls} calls, {caller.errors} errors, "
        f"{caller.retried} retried"
    )
    assert removal_writes == 1, "one slice write for the transition, none per check"
    assert caller.errors == 0, "every call that met the dead instance was retried elsewhere"
    assert caller.calls > 20
    # Discovery listed it all along: only the checks took it out.
    assert get_dsvc(own_cluster, NAMESPACE, "kill")["status"]["readyEndpoints"] == 3
    assert slice_writes(traffic_operator) - writes_before == 2  # out, and back in
    written = {
        kind: n - kinds_before.get(kind, 0)
        for kind, n in writes_by_kind(traffic_operator).items()
        if n != kinds_before.get(kind, 0)
    }
    assert all_writes(traffic_operator) - all_before == 2, written  # no status, no Event


def test_all_instances_unreachable_is_a_panic_that_keeps_them_published(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
    netlab: NetLab,
) -> None:
    publish(own_cluster, NAMESPACE, "panic", static(instances), healthCheck=CHECK)
    wait_dns(traffic_dns, "panic", NAMESPACE, ips(instances))

    for server in instances:
        server.host.link_down()

    def panic_is(status: str) -> dict[str, Any] | None:
        cond = condition(get_dsvc(own_cluster, NAMESPACE, "panic"), "HealthPanic")
        return cond if cond.get("status") == status else None

    cond = eventually("HealthPanic=True", lambda: panic_is("True"), 15)
    assert cond["reason"] == "HealthPanic"
    assert a_records(traffic_dns.address, fqdn("panic", NAMESPACE)) == ips(instances)

    for server in instances:
        server.host.link_up()

    cond = eventually("HealthPanic=False", lambda: panic_is("False"), 15)
    assert cond["reason"] == "HealthChecksPassing"
    wait_dns(traffic_dns, "panic", NAMESPACE, ips(instances))
