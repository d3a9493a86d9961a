"""Draining, exclusions and the steady state, with real instances in the network lab.

The same lab, CoreDNS and operator as tests/e2e/test_traffic.py, on a cluster of this
module's own (the operator is restarted here).
"""

from __future__ import annotations

from typing import Any

import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.netlab import InstanceServer
from devenv.operatorproc import OperatorProcess
from support import discovery_count, eventually, get_dsvc, patch
from traffic import (
    CHECK,
    PORT,
    endpoint_conditions,
    fqdn,
    health_checks,
    ips,
    publish,
    slice_writes,
    static,
    wait_dns,
    writes_by_kind,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "draining"


def test_weight_zero_drains_and_a_removed_instance_terminates_then_goes(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    first, second, third = (s.address[0] for s in instances)
    publish(own_cluster, NAMESPACE, "drain", static(instances, frozenset({second})), drainSeconds=3)
    wait_dns(traffic_dns, "drain", NAMESPACE, {first, third})
    drained = endpoint_conditions(own_cluster, NAMESPACE, "drain")[second]
    assert (drained["ready"], drained["serving"], drained["terminating"]) == (False, True, False)

    kept = static(instances[:2], frozenset({second}))
    patch(own_cluster, "directservice", NAMESPACE, "drain", {"spec": {"provider": kept}})
    wait_dns(traffic_dns, "drain", NAMESPACE, {first})

    def terminating() -> dict[str, Any] | None:
        found = endpoint_conditions(own_cluster, NAMESPACE, "drain").get(third)
        return found if found and found["terminating"] else None

    leaving = eventually("the removed instance terminating", terminating, 10, 0.05)
    assert (leaving["ready"], leaving["serving"]) == (False, False)
    eventually(
        "the removed instance deleted",
        lambda: third not in endpoint_conditions(own_cluster, NAMESPACE, "drain"),
        10,
    )


def test_an_exclusion_takes_one_instance_out_and_survives_a_restart(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    first, second, third = (s.address[0] for s in instances)
    publish(
        own_cluster,
        NAMESPACE,
        "exclude",
        static(instances),
        exclude=[f"{second}:{PORT}"],
        healthCheck=CHECK,
    )
    wait_dns(traffic_dns, "exclude", NAMESPACE, {first, third})
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
    excluded = endpoint_conditions(own_cluster, NAMESPACE, "exclude")[second]
    assert (excluded["ready"], excluded["serving"], excluded["terminating"]) == (
        False,
        False,
        False,
    )
    assert instances[1].requests() == 0, "an excluded instance gets no health checks either"

    traffic_operator.stop()
    traffic_operator.start()

    # Three polls after the restart, and three rounds of checks: still out, nothing written.
    polls = discovery_count(traffic_operator, "static", "ok")
    eventually(
        "3 polls", lambda: discovery_count(traffic_operator, "static", "ok") >= polls + 3, 20
    )
    eventually("checks", lambda: health_checks(traffic_operator) >= 6, 20)
    assert a_records(traffic_dns.address, fqdn("exclude", NAMESPACE)) == {first, third}
    assert slice_writes(traffic_operator) == 0
    assert instances[1].requests() == 0


def test_with_health_checks_on_a_steady_state_writes_nothing(
    own_cluster: ControlPlane,
    traffic_dns: CoreDNS,
    traffic_operator: OperatorProcess,
    instances: list[InstanceServer],
) -> None:
    publish(own_cluster, NAMESPACE, "steady", static(instances), healthCheck=CHECK)
    wait_dns(traffic_dns, "steady", NAMESPACE, ips(instances))
    eventually(
        "status written",
        lambda: (
            get_dsvc(own_cluster, NAMESPACE, "steady").get("status", {}).get("readyEndpoints") == 3
        ),
        10,
    )
    # The poll that wrote the status posts its Events after it: let two more polls pass.
    polls = discovery_count(traffic_operator, "static", "ok")
    eventually(
        "2 more polls", lambda: discovery_count(traffic_operator, "static", "ok") >= polls + 2, 20
    )
    checks, writes = health_checks(traffic_operator), writes_by_kind(traffic_operator)

    # Twenty rounds of checks of the three instances: at least 60 checks, counted.
    eventually("60 more checks", lambda: health_checks(traffic_operator) >= checks + 60, 40)

    assert writes_by_kind(traffic_operator) == writes
