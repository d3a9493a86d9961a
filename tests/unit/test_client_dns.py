"""The reference client's DNS: wire format against hand-built packets, malformed packets,
UDP with the TCP fallback against a loopback responder, SRV resolution and its TTL cache."""

from __future__ import annotations

import http.server
import random
import socket
import socketserver
import struct
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import dns.message
import pytest

from devenv.paths import child_env
from directservice.client import (
    DnsClient,
    DnsError,
    DnsFormatError,
    DnsNoAnswer,
    Instance,
    NoInstancesError,
    SrvResolver,
    parse_resolv_conf,
    srv_name,
)
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

pytestmark = pytest.mark.unit

SRV = "_http._tcp.mnist.default.svc.cluster.local"
HEAD = struct.Struct("!HHHHHH")
Value = str | tuple[int, int, int, str]  # an address, or SRV (priority, weight, port, target)
Rec = tuple[str, int, int, Value]  # owner, type, ttl, value


# -- packets by hand ----------------------------------------------------------------------


def wire(name: str) -> bytes:
    labels = [label.encode() for label in name.strip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\x00"


def rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata


def rdata(rtype: int, value: Value) -> bytes:
    if isinstance(value, str):
        family = socket.AF_INET if rtype == TYPE_A else socket.AF_INET6
        return socket.inet_pton(family, value)
    priority, weight, port, target = value
    return struct.pack("!HHH", priority, weight, port) + wire(target)


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


def test_search_list_comes_first_for_names_with_few_dots() -> None:
    assert candidate_names("a.b", ["x.y"], ndots=5) == ["a.b.x.y.", "a.b."]
    assert candidate_names("a.b", ["x.y"], ndots=1) == ["a.b.", "a.b.x.y."]
    assert candidate_names("a.b.", ["x.y"], ndots=5) == ["a.b."]


# -- a loopback responder, UDP and TCP on one port ----------------------------------------


class FakeDns:
    """Answers from `zone`: (name, type) -> (answers, glue), records as (owner, type, ttl,
    value). Counts every question by (transport, name, type)."""

    def __init__(self) -> None:
        self.zone: dict[tuple[str, int], tuple[list[Rec], list[Rec]]] = {}
        self.rcode = 0
        self.truncate_udp = False
        self.stray_first = False  # send a reply with another id before the right one
        self.asked: Counter[tuple[str, str, int]] = Counter()

    def answer(self, query: bytes, transport: str) -> list[bytes]:
        qid = struct.unpack_from("!H", query)[0]
        end = query.index(b"\x00", 12) + 1
        name = ".".join(part.decode() for part in _labels(query[12:end]))
        rtype = struct.unpack_from("!H", query, end)[0]
        self.asked[(transport, name, rtype)] += 1
        answers, glue = self.zone.get((name, rtype), ([], []))
        rcode = self.rcode if self.rcode else (0 if answers or glue else 3)
        body = b"".join(rr(wire(o), t, ttl, rdata(t, v)) for o, t, ttl, v in [*answers, *glue])
        flags, counts = 0x8180 | rcode, (len(answers), 0, len(glue))
        if transport == "udp" and self.truncate_udp:
            flags, counts, body = flags | 0x0200, (0, 0, 0), b""
        reply = HEAD.pack(qid, flags, 1, *counts) + query[12 : end + 4] + body
        stray = [HEAD.pack(qid ^ 1, flags, 0, 0, 0, 0)] if self.stray_first else []
        return [*stray, reply]


def _labels(raw: bytes) -> Iterator[bytes]:
    at = 0
    while raw[at]:
        yield raw[at + 1 : at + 1 + raw[at]]
        at += 1 + raw[at]


class _UdpServer(socketserver.ThreadingUDPServer):
    fake: FakeDns
    daemon_threads = True


class _TcpServer(socketserver.ThreadingTCPServer):
    fake: FakeDns
    daemon_threads = True


class _Udp(socketserver.BaseRequestHandler):
    server: _UdpServer

    def handle(self) -> None:
        data, sock = self.request
        for reply in self.server.fake.answer(data, "udp"):
            sock.sendto(reply, self.client_address)


class _Tcp(socketserver.BaseRequestHandler):
    server: _TcpServer

    def handle(self) -> None:
        (length,) = struct.unpack("!H", self.request.recv(2, socket.MSG_WAITALL))
        query = self.request.recv(length, socket.MSG_WAITALL)
        reply = self.server.fake.answer(query, "tcp")[-1]
        self.request.sendall(struct.pack("!H", len(reply)) + reply)


@pytest.fixture
def fake_dns() -> Iterator[tuple[FakeDns, tuple[str, int]]]:
    fake = FakeDns()
    for _ in range(20):  # the TCP port's UDP twin may be taken: then try another port
        tcp = _TcpServer(("127.0.0.1", 0), _Tcp)
        try:
            udp = _UdpServer(("127.0.0.1", tcp.server_address[1]), _Udp)
            break
        except OSError:
            tcp.server_close()
    tcp.fake = udp.fake = fake
    servers: tuple[socketserver.BaseServer, ...] = (tcp, udp)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield fake, ("127.0.0.1", tcp.server_address[1])
    for server in servers:
        server.shutdown()
        server.server_close()


def publish(
    fake: FakeDns,
    pods: dict[str, str],
    *,
    srv_ttl: int = 30,
    a_ttl: int = 30,
    glue: bool = True,
    port: int = 8080,
) -> None:
    """SRV records for `pods` (hostname -> IP) on `port`, with A glue unless told not."""
    targets = {host: f"{host}.mnist.default.svc.cluster.local" for host in pods}
    srvs: list[Rec] = [(SRV, TYPE_SRV, srv_ttl, (0, 50, port, t)) for t in targets.values()]
    addresses: list[Rec] = [(targets[h], TYPE_A, a_ttl, ip) for h, ip in pods.items()]
    fake.zone = {(SRV, TYPE_SRV): (srvs, addresses if glue else [])}
    for record in addresses:
        fake.zone[(record[0], TYPE_A)] = ([record], [])


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


def test_relative_name_is_found_through_the_search_list(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"})
    dns = DnsClient(server, search=["default.svc.cluster.local", "cluster.local"], ndots=5)
    resolver = SrvResolver(srv_name("mnist", "default", zone=None), dns)
    assert resolver.instances() == (Instance("10.0.0.1", 8080),)
    assert (
        fake.asked[("udp", "_http._tcp.mnist.default.svc.default.svc.cluster.local", TYPE_SRV)] == 1
    )
    assert fake.asked[("udp", SRV, TYPE_SRV)] == 1


def test_targets_without_glue_are_asked_for(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1", "pod-b": "10.0.0.2"}, glue=False)
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    assert resolver.instances() == (Instance("10.0.0.1", 8080), Instance("10.0.0.2", 8080))
    assert fake.asked[("udp", "pod-b.mnist.default.svc.cluster.local", TYPE_A)] == 1


def test_only_the_best_priority_with_a_target_is_used(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1", "pod-b": "10.0.0.2"})
    srvs, glue = fake.zone[(SRV, TYPE_SRV)]
    backup = (SRV, TYPE_SRV, 30, (10, 50, 8080, "pod-b.mnist.default.svc.cluster.local"))
    no_service = (SRV, TYPE_SRV, 30, (0, 50, 8080, "."))
    fake.zone[(SRV, TYPE_SRV)] = ([srvs[0], backup, no_service], glue)
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    assert resolver.instances() == (Instance("10.0.0.1", 8080),)


# -- the TTL cache ------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_answer_is_kept_for_its_smallest_ttl(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"}, srv_ttl=30, a_ttl=5)
    clock = Clock()
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server), clock=clock)

    def asked() -> int:
        return fake.asked[("udp", SRV, TYPE_SRV)]

    assert resolver.instances() == (Instance("10.0.0.1", 8080),)
    clock.now += 4.9
    publish(fake, {"pod-b": "10.0.0.2"})
    assert (resolver.instances(), asked()) == ((Instance("10.0.0.1", 8080),), 1)
    clock.now += 0.1  # the A record's 5 s are over
    assert (resolver.instances(), asked(), resolver.resolutions) == (
        (Instance("10.0.0.2", 8080),),
        2,
        2,
    )


def test_a_failed_re_resolution_keeps_the_last_good_answer(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    fake, server = fake_dns
    publish(fake, {"pod-a": "10.0.0.1"}, srv_ttl=5, a_ttl=5)
    clock = Clock()
    resolver = SrvResolver(
        srv_name("mnist", "default"), DnsClient(server), clock=clock, retry_interval=2
    )
    good = resolver.instances()
    fake.zone = {}  # every instance gone from DNS: an empty answer is no answer
    clock.now += 5
    assert (resolver.instances(), resolver.stale, resolver.failures) == (good, True, 1)
    assert isinstance(resolver.last_error, DnsNoAnswer)
    clock.now += 1.9
    assert (resolver.instances(), resolver.failures) == (good, 1)  # not asked again yet
    fake.rcode = 2
    clock.now += 0.1
    assert (resolver.instances(), resolver.failures, resolver.stale) == (good, 2, True)
    fake.rcode = 0
    publish(fake, {"pod-b": "10.0.0.2"})
    clock.now += 2
    assert (resolver.instances(), resolver.stale) == ((Instance("10.0.0.2", 8080),), False)


def test_without_any_good_answer_there_is_nothing_to_call(
    fake_dns: tuple[FakeDns, tuple[str, int]],
) -> None:
    _, server = fake_dns
    resolver = SrvResolver(srv_name("mnist", "default"), DnsClient(server))
    with pytest.raises(NoInstancesError, match="not resolved"):
        resolver.instances()
    with pytest.raises(NoInstancesError):
        resolver.instances()
    assert resolver.failures == 2  # asked again on each use: there was nothing to keep


def test_resolv_conf_is_the_default_source_of_the_server(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nsearch svc.cluster.local\noptions ndots:2\n")
    dns = DnsClient(resolv_conf=conf)
    assert (dns.server, dns.search, dns.ndots) == (("127.0.0.53", 53), ("svc.cluster.local",), 2)


# -- the command line, through DNS to a loopback instance ---------------------------------


class _Pong(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"pong")

    def log_message(self, *args: object) -> None:
        pass


def test_the_command_line_prints_who_answered(fake_dns: tuple[FakeDns, tuple[str, int]]) -> None:
    fake, (host, port) = fake_dns
    instance = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pong)
    threading.Thread(target=instance.serve_forever, args=(0.05,), daemon=True).start()
    at = instance.server_address[1]
    publish(fake, {"pod-a": "127.0.0.1"}, port=at)
    argv = ["mnist.default", "--dns", f"{host}:{port}", "--data", "{}", "--count", "2"]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "directservice.client", *argv],
            check=False, capture_output=True, text=True, env=child_env(), timeout=60,
        )  # fmt: skip
    finally:
        instance.shutdown()
        instance.server_close()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{n}: 200 from 127.0.0.1:{at} (try 1) pong" for n in (1, 2)
    ]
