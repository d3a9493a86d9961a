"""A fake DNS server on loopback for the reference client's tests: UDP and TCP on one port,
answering from a zone the test edits, counting every question; and packets built by hand.

    with running_fake_dns() as (fake, server):
        publish(fake, {"pod-a": "10.0.0.1"})
        DnsClient(server).query(SRV, TYPE_SRV)
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
from collections import Counter
from collections.abc import Iterator

from directservice.client.dnswire import TYPE_A, TYPE_SRV

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


@contextlib.contextmanager
def running_fake_dns() -> Iterator[tuple[FakeDns, tuple[str, int]]]:
    """A FakeDns serving UDP and TCP on one loopback port: the fake, and its address."""
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
    try:
        yield fake, ("127.0.0.1", tcp.server_address[1])
    finally:
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
