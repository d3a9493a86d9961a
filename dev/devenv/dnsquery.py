"""DNS questions to the test CoreDNS, answered as plain Python values."""

from __future__ import annotations

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype


def _ask(server: tuple[str, int], name: str, rdtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return dns.query.udp(query, server[0], port=server[1], timeout=2.0)


def a_records(server: tuple[str, int], name: str) -> set[str]:
    """The A (and AAAA) addresses for `name`; empty on NXDOMAIN or no answer."""
    found: set[str] = set()
    for rdtype in ("A", "AAAA"):
        try:
            answer = _ask(server, name, rdtype)
        except dns.exception.Timeout:
            continue
        for rrset in answer.answer:
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                found.update(r.address for r in rrset)
    return found


def srv_records(server: tuple[str, int], name: str) -> set[tuple[str, int]]:
    """(target address, port) for each SRV answer, resolving targets via the additional section."""
    answer = _ask(server, name, "SRV")
    if answer.rcode() != dns.rcode.NOERROR:
        return set()
    glue: dict[str, str] = {}
    for rrset in answer.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            for r in rrset:
                glue[rrset.name.to_text()] = r.address
    result: set[tuple[str, int]] = set()
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.SRV:
            for r in rrset:
                target = r.target.to_text()
                result.add((glue.get(target, target), r.port))
    return result
