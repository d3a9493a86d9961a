"""The control plane goes away under a running operator: first kube-apiserver, then etcd.

test_resilience.py proves a kube-apiserver restart is caught up within a poll. Here the
same outage is watched from the client's side too: CoreDNS keeps answering what was
published while the API server is down, over several counted polls, and answers the change
made meanwhile once the operator has caught up. An etcd outage (kube-apiserver up but
unable to read or write anything) must end the same way: the same operator process, no
daemon restart, the change published within a poll of etcd's return.

A control plane, CoreDNS and an operator of this module's own: other tests must not see
the outages.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.operatorproc import OperatorProcess
from devenv.procs import http_ok
from devenv.tools import Tools
from directservice.emulator.runner import EmulatorThread
from faultkit import WRITES, log_offset, log_since, metric_total, published_versions
from support import (
    condition,
    create,
    directservice,
    emulator_requests,
    eventually,
    get_dsvc,
    pai_eas,
    running,
    wait_for_count,
    wait_health,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "outages"
OUTAGE_POLLS = 6  # polls the operator makes while the control plane is away
PORT = 8000


@pytest.fixture(scope="module")
def dns(own_cluster: ControlPlane, tools: Tools) -> Iterator[CoreDNS]:
    with CoreDNS(own_cluster, binary=tools.coredns, ttl=1) as server:
        yield server


@pytest.fixture(scope="module")
def outage_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("outages")) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc, tail=80) as started:
        yield started


def published(
    cp: ControlPlane, emulator: EmulatorThread, dns: CoreDNS, prefix: str, ips: set[str]
) -> tuple[str, str, str]:
    """A DirectService serving `ips`, published and answered by CoreDNS: (name, EAS
    service, FQDN)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    eas = name.replace("-", "_")
    emulator.set_instances(eas, [{"ip": ip, "port": PORT} for ip in sorted(ips)])
    create(cp, directservice(NAMESPACE, name, pai_eas(emulator.url, eas), drainSeconds=0))
    wait_published(cp, NAMESPACE, name, {(ip, PORT) for ip in ips})
    fqdn = f"{name}.{NAMESPACE}.svc.cluster.local"
    eventually("CoreDNS answering", lambda: a_records(dns.address, fqdn) == ips, 20)
    return name, eas, fqdn


def ride_out(
    emulator: EmulatorThread, eas: str, dns: CoreDNS, fqdn: str, polls: int
) -> list[set[str]]:
    """What CoreDNS answers for `fqdn` after each of `polls` polls of the outage."""
    seen = []
    for _ in range(polls):
        wait_requests(emulator, eas, 1, timeout=20)  # the loop keeps polling discovery
        seen.append(a_records(dns.address, fqdn))
    return seen


def caught_up_within_a_poll(
    cp: ControlPlane, emulator: EmulatorThread, name: str, eas: str, ips: set[str]
) -> None:
    """The change is published by the poll in flight when the control plane returned, or
    by the one after it."""
    returned = emulator_requests(emulator, eas)
    wait_published(cp, NAMESPACE, name, {(ip, PORT) for ip in ips}, timeout=30)
    assert emulator_requests(emulator, eas) <= returned + 2, "not caught up within a poll"
    wait_health(cp, NAMESPACE, name, "True", "DiscoverySucceeded")


def status_caught_up(cp: ControlPlane, name: str, endpoints: int) -> bool:
    dsvc = get_dsvc(cp, NAMESPACE, name)
    return (
        (dsvc.get("status") or {}).get("totalEndpoints") == endpoints
        and condition(dsvc, "DiscoveryHealthy").get("status") == "True"
        and condition(dsvc, "Ready").get("status") == "True"
    )


def watches_caught_up(
    cp: ControlPlane,
    operator: OperatorProcess,
    emulator: EmulatorThread,
    name: str,
    eas: str,
    ips: set[str],
) -> None:
    """After the outage the operator's watches deliver again: a further change is published
    within a poll, and then steady polls write nothing (a stale view would rewrite, or hit
    conflicts, on every poll)."""
    grown = {*ips, "10.62.9.9"}
    emulator.set_instances(eas, [{"ip": ip, "port": PORT} for ip in sorted(grown)])
    start = emulator_requests(emulator, eas)
    wait_published(cp, NAMESPACE, name, {(ip, PORT) for ip in grown})
    assert emulator_requests(emulator, eas) <= start + 2
    wait_requests(emulator, eas, 1)  # what that poll writes is written
    # And the status: writes failed in the outage, and the status write allowance may have
    # deferred the report of the recovery by a few seconds.
    eventually("the status caught up", lambda: status_caught_up(cp, name, len(grown)), 30)
    before, writes = published_versions(cp, NAMESPACE), metric_total(operator, WRITES)
    wait_requests(emulator, eas, 2)
    assert (published_versions(cp, NAMESPACE), metric_total(operator, WRITES)) == (before, writes)


def assert_no_daemon_restart(operator: OperatorProcess, pid: int, offset: int) -> None:
    """The same process, alive, and no poll loop that failed or restarted since `offset`."""
    assert operator.pid == pid
    assert http_ok(f"http://127.0.0.1:{operator.liveness_port}/healthz")
    log = log_since(operator, offset)
    assert "Will retry" not in log and "failed with an exception" not in log
    assert "internal error" not in log


def outage(
    stop: Callable[[], None], start: Callable[[], None], during: Callable[[], list[set[str]]]
) -> list[set[str]]:
    stop()
    try:
        return during()
    finally:
        start()


def test_coredns_answers_through_an_api_server_outage(
    own_cluster: ControlPlane,
    outage_operator: OperatorProcess,
    emulator: EmulatorThread,
    dns: CoreDNS,
) -> None:
    before, after = {"10.62.0.1", "10.62.0.2"}, {"10.62.0.1", "10.62.0.2", "10.62.0.3"}
    name, eas, fqdn = published(own_cluster, emulator, dns, "apiserver", before)
    pid, offset = outage_operator.pid, log_offset(outage_operator)

    def during() -> list[set[str]]:
        emulator.set_instances(eas, [{"ip": ip, "port": PORT} for ip in sorted(after)])
        return ride_out(emulator, eas, dns, fqdn, OUTAGE_POLLS)

    seen = outage(own_cluster.stop_apiserver, own_cluster.start_apiserver, during)
    assert seen == [before] * OUTAGE_POLLS  # served from CoreDNS's cache, unchanged
    caught_up_within_a_poll(own_cluster, emulator, name, eas, after)
    eventually("CoreDNS answering the change", lambda: a_records(dns.address, fqdn) == after, 20)
    watches_caught_up(own_cluster, outage_operator, emulator, name, eas, after)
    assert_no_daemon_restart(outage_operator, pid, offset)


def test_an_etcd_outage_is_caught_up_within_a_poll(
    own_cluster: ControlPlane,
    outage_operator: OperatorProcess,
    emulator: EmulatorThread,
    dns: CoreDNS,
) -> None:
    before, after = {"10.62.1.1"}, {"10.62.1.1", "10.62.1.2"}
    name, eas, fqdn = published(own_cluster, emulator, dns, "etcd", before)
    pid, offset = outage_operator.pid, log_offset(outage_operator)

    def during() -> list[set[str]]:
        # The poll that finds the change writes against a dead store: its write hangs (up to
        # the writer's 30 s request timeout) until etcd is back, so it is the only poll.
        writes = metric_total(outage_operator, WRITES)
        emulator.set_instances(eas, [{"ip": ip, "port": PORT} for ip in sorted(after)])
        seen = ride_out(emulator, eas, dns, fqdn, 1)
        wait_for_count(
            "a write sent", lambda: metric_total(outage_operator, WRITES), writes + 1, 20
        )
        return [*seen, a_records(dns.address, fqdn)]

    seen = outage(own_cluster.stop_etcd, own_cluster.start_etcd, during)
    assert seen == [before, before]
    caught_up_within_a_poll(own_cluster, emulator, name, eas, after)
    eventually("CoreDNS answering the change", lambda: a_records(dns.address, fqdn) == after, 20)
    watches_caught_up(own_cluster, outage_operator, emulator, name, eas, after)
    assert_no_daemon_restart(outage_operator, pid, offset)
