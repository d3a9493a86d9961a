"""Asking one DNS server: UDP first, TCP when the answer comes back truncated (TC bit).

The server, search list and ndots come from /etc/resolv.conf unless given, as a pod's own
resolver would use them: a name with fewer than `ndots` dots is tried with each search
domain first, then as it is; a name ending in a dot is only tried as it is.
"""

from __future__ import annotations

import secrets
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .dnswire import (
    FLAG_TRUNCATED,
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    Message,
    decode_header,
    decode_message,
    encode_query,
    same_name,
)
from .errors import DnsError, DnsNoAnswer

RESOLV_CONF = Path("/etc/resolv.conf")
DNS_PORT = 53
MAX_NDOTS = 15  # the cap glibc applies
_UDP_RECEIVE = 65535
_TCP_LENGTH = struct.Struct("!H")


@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[tuple[str, int], ...]
    search: tuple[str, ...] = ()
    ndots: int = 1


def parse_resolv_conf(text: str) -> ResolverConfig:
    """nameserver, search (or domain: the last of the two wins) and options ndots:N."""
    servers: list[tuple[str, int]] = []
    search: tuple[str, ...] = ()
    ndots = 1
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) < 2:
            continue
        key, values = words[0], words[1:]
        if key == "nameserver":
            servers.append((values[0], DNS_PORT))
        elif key in ("search", "domain"):
            search = tuple(v.strip(".") for v in values if v.strip("."))
        elif key == "options":
            for option in values:
                if option.startswith("ndots:") and option[6:].isdigit():
                    ndots = min(int(option[6:]), MAX_NDOTS)
    # With no nameserver line, resolvers ask the local host.
    return ResolverConfig(tuple(servers) or (("127.0.0.1", DNS_PORT),), search, ndots)


def read_resolv_conf(path: Path = RESOLV_CONF) -> ResolverConfig:
    try:
        return parse_resolv_conf(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return parse_resolv_conf("")


def candidate_names(name: str, search: Sequence[str], ndots: int) -> list[str]:
    """The absolute names to try for `name`, in order."""
    if name.endswith("."):
        return [name]
    searched = [f"{name}.{domain}." for domain in search]
    if name.count(".") >= ndots:
        return [f"{name}.", *searched]
    return [*searched, f"{name}."]


class DnsClient:
    """Queries to one server (host, port). Safe to share between threads: each query uses
    its own socket and a random id."""

    def __init__(
        self,
        server: tuple[str, int] | None = None,
        *,
        search: Sequence[str] | None = None,
        ndots: int | None = None,
        timeout: float = 2.0,
        tries: int = 2,
        resolv_conf: Path = RESOLV_CONF,
    ) -> None:
        config = read_resolv_conf(resolv_conf) if server is None else ResolverConfig((server,))
        self.server = config.nameservers[0]
        self.search = tuple(config.search if search is None else search)
        self.ndots = config.ndots if ndots is None else ndots
        self.timeout = timeout
        self.tries = max(1, tries)

    def lookup(self, name: str, rtype: int) -> tuple[str, Message]:
        """The first candidate name (see `candidate_names`) holding records of `rtype`:
        (that absolute name, the answer). DnsNoAnswer if none does."""
        tried = candidate_names(name, self.search, self.ndots)
        for candidate in tried:
            message = self.query(candidate, rtype)
            if message.rcode == RCODE_NOERROR and any(r.rtype == rtype for r in message.answers):
                return candidate, message
        raise DnsNoAnswer(f"no records of type {rtype} for {name} (tried {', '.join(tried)})")

    def query(self, name: str, rtype: int) -> Message:
        """One question to the server; NOERROR and NXDOMAIN answers are returned, any other
        outcome raises DnsError."""
        query_id = secrets.randbits(16)
        packet = encode_query(name, rtype, query_id)
        reply = self._over_udp(packet, query_id)
        if decode_header(reply)[1] & FLAG_TRUNCATED:  # the whole answer needs TCP
            reply = self._over_tcp(packet, query_id)
        message = decode_message(reply)
        self._check(message, query_id, name, rtype)
        return message

    def _check(self, message: Message, query_id: int, name: str, rtype: int) -> None:
        if message.id != query_id or not message.is_response:
            raise DnsError(f"{name}: the server's reply does not answer our query")
        if message.questions and (
            len(message.questions) != 1
            or not same_name(message.questions[0].name, name)
            or message.questions[0].rtype != rtype
        ):
            raise DnsError(f"{name}: the server's reply answers another question")
        if message.rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN):
            raise DnsError(f"{name}: the server answered with rcode {message.rcode}")

    def _over_udp(self, packet: bytes, query_id: int) -> bytes:
        host, port = self.server
        try:
            family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                # Connected: replies from any other address are dropped by the kernel, and a
                # closed port shows up as an error instead of a timeout.
                sock.connect(address)
                for _ in range(self.tries):
                    sock.send(packet)
                    reply = self._receive_reply(sock, query_id)
                    if reply is not None:
                        return reply
        except OSError as err:
            raise DnsError(f"DNS server {host}:{port} over UDP: {err}") from err
        raise DnsError(f"DNS server {host}:{port} did not answer {self.tries} tries over UDP")

    def _receive_reply(self, sock: socket.socket, query_id: int) -> bytes | None:
        """The reply to `query_id` within the timeout, None on timeout. Stray datagrams (an
        earlier try's late answer, garbage) are skipped."""
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(_UDP_RECEIVE)
            except TimeoutError:
                return None
            if len(data) >= 12 and struct.unpack_from("!H", data)[0] == query_id:
                return data
        return None

    def _over_tcp(self, packet: bytes, query_id: int) -> bytes:
        host, port = self.server
        deadline = time.monotonic() + self.timeout
        try:
            with socket.create_connection((host, port), timeout=self.timeout) as sock:
                sock.sendall(_TCP_LENGTH.pack(len(packet)) + packet)
                (length,) = _TCP_LENGTH.unpack(_read_exactly(sock, 2, deadline))
                reply = _read_exactly(sock, length, deadline)
        except OSError as err:
            raise DnsError(f"DNS server {host}:{port} over TCP: {err}") from err
        if decode_header(reply)[0] != query_id:
            raise DnsError(f"DNS server {host}:{port} over TCP answered another query")
        return reply


def _read_exactly(sock: socket.socket, size: int, deadline: float) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out reading the answer")
        sock.settimeout(left)
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(chunks)} of {size} octets")
        chunks += chunk
    return bytes(chunks)
