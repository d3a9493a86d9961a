"""CoreDNS serves a selector-less headless Service from EndpointSlices we write ourselves,
which is exactly what the operator publishes. The addresses are never contacted."""

from __future__ import annotations

from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from devenv.controlplane import ControlPlane
from devenv.coredns import CoreDNS
from support import apply, eventually

pytestmark = pytest.mark.e2e

PORT = 8080


def _objects(namespace: str) -> dict[str, Any]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "clusterIP": "None",
            "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
        },
    }
    endpoints = [
        {"addresses": [ip], "conditions": {"ready": ready}}
        for ip, ready in (("10.1.0.1", True), ("10.1.0.2", True), ("10.1.0.3", False))
    ]
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-v4",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "directservice.io",
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
        "endpoints": endpoints,
    }
    return {"apiVersion": "v1", "kind": "List", "items": [service, endpoint_slice]}


def _ask(server: CoreDNS, name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def _answered(server: CoreDNS, name: str, rdtype: str) -> dns.message.Message:
    """CoreDNS learns of new objects through a watch: the first NOERROR reply with answers."""

    def probe() -> dns.message.Message | None:
        reply = _ask(server, name, rdtype)
        return reply if reply.rcode() == dns.rcode.NOERROR and reply.answer else None

    return eventually(f"{rdtype} {name}", probe, 10, step=0.1)


def test_headless_service_from_endpointslice(
    control_plane: ControlPlane, coredns: CoreDNS, namespace: str
) -> None:
    apply(control_plane, _objects(namespace))
    fqdn = f"web.{namespace}.svc.cluster.local."

    a_reply = _answered(coredns, fqdn, "A")
    (a_set,) = [r for r in a_reply.answer if r.rdtype == dns.rdatatype.A]
    assert {r.address for r in a_set} == {"10.1.0.1", "10.1.0.2"}  # not-ready .3 is left out
    assert a_set.ttl == coredns.ttl == 5

    srv_reply = _answered(coredns, f"_http._tcp.{fqdn}", "SRV")
    (srv_set,) = [r for r in srv_reply.answer if r.rdtype == dns.rdatatype.SRV]
    assert {r.port for r in srv_set} == {PORT}
    targets = {r.target.to_text() for r in srv_set}
    assert targets == {f"10-1-0-1.{fqdn}", f"10-1-0-2.{fqdn}"}
    glue = {
        rrset.name.to_text(): {r.address for r in rrset}
        for rrset in srv_reply.additional
        if rrset.rdtype == dns.rdatatype.A
    }
    assert glue == {f"10-1-0-1.{fqdn}": {"10.1.0.1"}, f"10-1-0-2.{fqdn}": {"10.1.0.2"}}


def test_unknown_service_is_nxdomain(coredns: CoreDNS, namespace: str) -> None:
    reply = _ask(coredns, f"nothing.{namespace}.svc.cluster.local.", "A")
    assert reply.rcode() == dns.rcode.NXDOMAIN
