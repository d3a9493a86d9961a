"""The reference client's DNS: wire format against hand-built packets, malformed packets,
resolv.conf and the search list, UDP with the TCP fallback against a loopback responder."""

from __future__ import annotations

import random
import socket
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from directservice.client import DnsClient, DnsError, DnsFormatError, parse_resolv_conf
from directservice.client.dnsclient import candidate_names
from directservice.client.dnswire import (
    TYPE_A,
    TYPE_AAAA,
    TYPE_SRV,
    SrvData,
    decode_message,
    encode_name,
    encode_query,
)
from dnsfake import HEAD, SRV, FakeDns, publish, rr, running_fake_dns, wire

pytestmark = pytest.mark.unit


# -- packets by hand ----------------------------------------------------------------------


def srv_answer_with_pointers() -> bytes:
    """An SRV answer as CoreDNS compresses it: owners point at the question, the target's
    zone points into the question name, the glue's owner points at the target."""
    question = wire(SRV) + struct.pack("!HH", TYPE_SRV, 1)
    zone_at = 12 + len(wire("_http._tcp")) - 1  # "mnist.default.svc..." inside the question
    target_rdata = (
        struct.pack("!HHH", 0, 100, 8080) + b"\x05pod-a" + struct.pack("!H", 0xC000 | zone_at)
    )
    answer = rr(b"\xc0\x0c", TYPE_SRV, 30, target_rdata)
    target_at = 12 + len(question) + len(answer) - len(target_rdata) + 6
    glue_a = rr(struct.pack("!H", 0xC000 | target_at), TYPE_A, 5, bytes([10, 0, 0, 7]))
    glue_aaaa = rr(
        struct.pack("!H", 0xC000 | target_at), TYPE_AAAA, 7, b"\xfd" + b"\x00" * 14 + b"\x07"
    )
    return HEAD.pack(0x1234, 0x8180, 1, 1, 0, 2) + question + answer + glue_a + glue_aaaa


def test_query_is_encoded_as_the_rfc_says() -> None:
    expected = (
        b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x03www\x07example\x03com\x00\x00\x21\x00\x01"
    )
    assert encode_query("www.example.com.", TYPE_SRV, 0xBEEF) == expected
    assert encode_name(".") == b"\x00"


@pytest.mark.parametrize("name", ["a" * 64 + ".com", "a..b", ".".join(["a" * 60] * 5), "café.fr"])
def test_names_that_cannot_be_encoded_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="DNS name"):
        encode_name(name)


def test_compressed_srv_answer_with_glue_decodes() -> None:
    packet = srv_answer_with_pointers()
    assert len(dns.message.from_wire(packet).additional) == 2  # valid for dnspython too
    message = decode_message(packet)
    assert (message.id, message.is_response, message.truncated) == (0x1234, True, False)
    assert message.questions[0].name == SRV
    (srv,) = message.answers
    assert (srv.name, srv.ttl) == (SRV, 30)
    assert srv.value == SrvData(0, 100, 8080, "pod-a.mnist.default.svc.cluster.local")
    a, aaaa = message.additional
    assert (a.name, a.value, a.ttl) == ("pod-a.mnist.default.svc.cluster.local", "10.0.0.7", 5)
    assert (aaaa.value, aaaa.ttl) == ("fd00::7", 7)


def test_labels_are_shown_escaped_and_a_ttl_with_the_top_bit_is_zero() -> None:
    owner = b"\x03a.b\x02\x00\xff\x00"
    packet = HEAD.pack(1, 0x8000, 0, 1, 0, 0) + rr(owner, TYPE_A, 0x80000001, b"\x01\x02\x03\x04")
    (record,) = decode_message(packet).answers
    assert (record.name, record.ttl) == ("a\\.b.\\000\\255", 0)


def long_name_by_pointers() -> bytes:
    """Four names of one 63-octet label each, kept in the data of a record of an unknown
    type, each pointing back at the one before; a second record's owner points at the last:
    a name of 4 * 64 + 1 = 257 octets, though no pointer goes forward."""
    names, previous = b"", None
    for _ in range(4):
        at = 23 + len(names)  # header, root owner, type/class/ttl/length
        link = b"\x00" if previous is None else struct.pack("!H", 0xC000 | previous)
        names += b"\x3f" + b"x" * 63 + link
        previous = at
    owner = struct.pack("!H", 0xC000 | (previous or 0))
    store = rr(b"\x00", 0xFF00, 5, names)
    return HEAD.pack(1, 0x8000, 0, 2, 0, 0) + store + rr(owner, TYPE_A, 5, b"\x01\x02\x03\x04")


ONE_ANSWER = HEAD.pack(1, 0x8000, 0, 1, 0, 0)
MALFORMED = {
    "shorter than its header": (b"\x00\x01\x80", "shorter than its header"),
    "counts it cannot hold": (HEAD.pack(1, 0x8000, 0, 40, 0, 0) + b"\x00" * 30, "cannot hold"),
    "pointer to itself": (ONE_ANSWER + b"\xc0\x0c" + b"\x00" * 10, "does not point backwards"),
    "pointer forwards": (ONE_ANSWER + b"\xc0\x0e" + b"\x00" * 12, "does not point backwards"),
    "pointer cut off": (ONE_ANSWER + b"\x09abcdefghi\xc0", "pointer cut off"),
    "reserved label type": (ONE_ANSWER + b"\x41abc" + b"\x00" * 11, "reserved label type"),
    "label past the end": (ONE_ANSWER + b"\x3fabc" + b"\x00" * 9, "label cut off"),
    "data past the end": (
        ONE_ANSWER + b"\x00" + struct.pack("!HHIH", 1, 1, 5, 40) + b"\x01",
        "run past the end",
    ),
    "A of 3 octets": (ONE_ANSWER + rr(b"\x00", TYPE_A, 5, b"\x01\x02\x03"), "not 4"),
    "AAAA of 15 octets": (ONE_ANSWER + rr(b"\x00", TYPE_AAAA, 5, b"\x00" * 15), "not 16"),
    "SRV of 6 octets": (ONE_ANSWER + rr(b"\x00", TYPE_SRV, 5, b"\x00" * 6), "only 6 octets"),
    "SRV target past its data": (
        ONE_ANSWER + rr(b"\x00", TYPE_SRV, 5, b"\x00" * 6 + b"\x03ab") + b"c\x00",
        "label cut off",
    ),
    "SRV target short of its data": (
        ONE_ANSWER + rr(b"\x00", TYPE_SRV, 5, b"\x00" * 7 + b"\x00"),
        "its name ends at 30, its data at 31",
    ),
    "name over 255 octets": (long_name_by_pointers(), "longer than 255"),
}


@pytest.mark.parametrize(("packet", "reason"), MALFORMED.values(), ids=MALFORMED)
def test_malformed_packets_raise_a_format_error(packet: bytes, reason: str) -> None:
    with pytest.raises(DnsFormatError, match=reason):
        decode_message(packet)


def test_damaged_packets_only_ever_raise_a_format_error() -> None:
    valid = srv_answer_with_pointers()
    rng = random.Random(20240601)
    damaged = [valid[:cut] for cut in range(len(valid))]
    for _ in range(3000):
        edited = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            edited[rng.randrange(len(edited))] = rng.randrange(256)
        damaged.append(bytes(edited))
    outcomes: Counter[str] = Counter()
    for packet in damaged:
        try:
            decode_message(packet)
            outcomes["decoded"] += 1
        except DnsFormatError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > len(valid)  # every cut is refused, and many edits too
    assert sum(outcomes.values()) == len(damaged)


# -- resolv.conf and the search list ------------------------------------------------------


def test_resolv_conf_of_a_pod_is_read() -> None:
    config = parse_resolv_conf(
        "# a pod's file\nsearch default.svc.cluster.local svc.cluster.local cluster.local\n"
        "nameserver 10.96.0.10\nnameserver 10.96.0.11 ; second\noptions ndots:5 timeout:1\n"
    )
    assert config.nameservers[0] == ("10.96.0.10", 53)
    assert config.search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert config.ndots == 5
    assert parse_resolv_conf("").nameservers == (("127.0.0.1", 53),)


def test_resolv_conf_is_the_default_source_of_the_server(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nsearch svc.cluster.local\noptions ndots:2\n")
    dns = DnsClient(resolv_conf=conf)
    assert (dns.server, dns.search, dns.ndots) == (("127.0.0.53", 53), ("svc.cluster.local",), 2)


def test_search_list_comes_first_for_names_with_few_dots() -> None:
    assert candidate_names("a.b", ["x.y"], ndots=5) == ["a.b.x.y.", "a.b."]
    assert candidate_names("a.b", ["x.y"], ndots=1) == ["a.b.", "a.b.x.y."]
    assert candidate_names("a.b.", ["x.y"], ndots=5) == ["a.b."]


# -- UDP and TCP against a loopback responder ---------------------------------------------


@pytest.fixture
def fake_dns() -> Iterator[tuple[FakeDns, tuple[str, int]]]:
    with running_fake_dns() as served:
        yield served


def test_udp_answers_are_used_and_tcp_is_not(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"})
    fake.stray_first = True
    message = DnsClient(server).query(SRV + ".", TYPE_SRV)
    assert [r.value.port for r in message.answers if isinstance(r.value, SrvData)] == [8080]
    assert fake.asked == Counter({("udp", SRV, TYPE_SRV): 1})


def test_a_truncated_answer_is_asked_again_over_tcp(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {f"pod-{n}": f"10.0.1.{n}" for n in range(40)})
    fake.truncate_udp = True
    message = DnsClient(server).query(SRV, TYPE_SRV)
    assert (len(message.answers), len(message.additional), message.truncated) == (40, 40, False)
    assert fake.asked == Counter({("udp", SRV, TYPE_SRV): 1, ("tcp", SRV, TYPE_SRV): 1})


def test_server_failure_silence_and_a_closed_port_are_dns_errors(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    fake.rcode = 2
    with pytest.raises(DnsError, match="rcode 2"):
        DnsClient(server).query(SRV, TYPE_SRV)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(DnsError, match="did not answer 2 tries"):
            DnsClient(silent.getsockname(), timeout=0.1, tries=2).query(SRV, TYPE_SRV)
        closed = silent.getsockname()
    with pytest.raises(DnsError, match="UDP"):
        DnsClient(closed, timeout=2.0).query(SRV, TYPE_SRV)
