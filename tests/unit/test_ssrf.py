"""Where discovery calls may connect: refused addresses after DNS, rebinding, literals, TLS
names and redirects, against servers on loopback only.

"Allowed" addresses here are loopback ones the test allows explicitly (127.0.0.2/32); the
refused target is 127.0.0.1. Resolvers are scripted: no name is ever looked up elsewhere,
except `localhost`, which the system resolves from its hosts file.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from itertools import cycle
from pathlib import Path

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from directservice.api.reasons import Reason
from directservice.core.model import DiscoveryError
from directservice.discovery.addresses import AddressPolicy, AddressRefused
from directservice.discovery.httpclient import HttpClient, HttpResponse
from directservice.emulator.tls import self_signed

pytestmark = pytest.mark.unit

GOOD = "127.0.0.2"  # allowed by ALLOW_GOOD
REFUSED = "127.0.0.1"
ALLOW_GOOD = AddressPolicy((ipaddress.ip_network("127.0.0.2/32"),))
LOOPBACK_ALLOWED = AddressPolicy(
    (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
)
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class Counting:
    """A bare HTTP server that counts the connections it accepts; every answer closes."""

    def __init__(self, answer: bytes = ANSWER) -> None:
        self.answer = answer
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(self.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that gave up (a refused TLS name) is no server failure
        finally:
            writer.close()


@asynccontextmanager
async def serving(
    server: Counting, host: str, port: int = 0, tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    listener = await asyncio.start_server(server.handle, host, port, ssl=tls)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        await listener.wait_closed()


@asynccontextmanager
async def good_and_refused() -> AsyncIterator[tuple[int, Counting, Counting]]:
    """Servers on GOOD and REFUSED at one port, as one name rebinding between them finds."""
    for _ in range(20):
        good, refused = Counting(), Counting()
        async with serving(good, GOOD) as port:
            try:
                async with serving(refused, REFUSED, port):
                    yield port, good, refused
                    return
            except OSError:  # the port is taken on 127.0.0.1: try another
                continue
    raise AssertionError("no port free on both loopback addresses")


class Scripted(AbstractResolver):
    """Answers each lookup with the next address list of `answers`, round and round."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers: Iterator[list[str]] = cycle(answers)
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        return [
            ResolveResult(
                hostname=host, host=ip, port=port, family=socket.AF_INET, proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for ip in next(self._answers)
        ]  # fmt: skip

    async def close(self) -> None:
        return None


async def outcome(
    client: HttpClient, url: str, tls: ssl.SSLContext | None = None
) -> HttpResponse | DiscoveryError:
    try:
        return await client.request(
            "GET", url, connect_timeout=1.0, read_timeout=2.0, ssl_context=tls
        )
    except DiscoveryError as exc:
        return exc


def refusal(result: HttpResponse | DiscoveryError) -> DiscoveryError:
    assert isinstance(result, DiscoveryError), result
    assert result.reason == Reason.ADDRESS_NOT_ALLOWED, result.message
    return result


# -- the policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("::1", "loopback"),
        ("169.254.169.254", "link-local"), ("169.254.0.23", "link-local"),
        ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
        ("100.100.100.200", "a cloud metadata service"),
        ("fd00:ec2::254", "a cloud metadata service"),
        ("fd20:ce::254", "a cloud metadata service"),
        ("168.63.129.16", "a cloud metadata service"),
        ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
        ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::ffff:127.0.0.1", "loopback"),  # an IPv4-mapped address is its IPv4 address
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ],
)  # fmt: skip
def test_refused_kinds(ip: str, kind: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(ip)) == kind


@pytest.mark.parametrize(
    "ip", ["10.0.0.1", "100.64.0.1", "100.100.2.136", "192.168.1.1", "fd00::1", "8.8.8.8"]
)
def test_other_addresses_are_not_refused(ip: str) -> None:
    """Private, CGNAT and public addresses: where provider endpoints resolve to."""
    assert AddressPolicy().refusal(ipaddress.ip_address(ip)) is None


def test_an_allowed_network_lifts_the_refusal_inside_it_only() -> None:
    policy = AddressPolicy((ipaddress.ip_network("127.0.0.0/8"),))
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"  # another family
    assert policy.refusal(ipaddress.ip_address("169.254.169.254")) == "link-local"


def test_the_refusal_names_host_and_address_only() -> None:
    with pytest.raises(AddressRefused) as caught:
        AddressPolicy().check("eas.example", "100.100.100.200")
    assert str(caught.value) == (
        "eas.example resolved to 100.100.100.200 (a cloud metadata service), an address the"
        " operator does not connect to unless --allow-discovery-cidr allows it"
    )


# -- through the client -------------------------------------------------------------------


def test_a_name_that_rebinds_to_a_refused_address_never_reaches_it() -> None:
    """Each lookup flips the answer: every request resolves once, and connects where the
    checked answer said. A check-then-connect with two lookups would reach REFUSED."""

    async def scenario() -> tuple[list[object], Scripted, Counting, Counting]:
        async with good_and_refused() as (port, good, refused):
            resolver = Scripted([GOOD], [REFUSED])
            client = HttpClient(addresses=ALLOW_GOOD, resolver=resolver, dns_cache_seconds=0)
            try:
                results = [await outcome(client, f"http://rebind.test:{port}/") for _ in range(10)]
            finally:
                await client.close()
        shown = [r.status if isinstance(r, HttpResponse) else r.reason for r in results]
        return shown, resolver, good, refused

    shown, resolver, good, refused = asyncio.run(scenario())
    assert resolver.lookups == ["rebind.test"] * 10
    assert shown == [200, Reason.ADDRESS_NOT_ALLOWED] * 5
    assert (good.connections, refused.connections) == (5, 0)


def test_one_refused_address_refuses_the_whole_answer() -> None:
    async def scenario() -> tuple[HttpResponse | DiscoveryError, int, int]:
        async with good_and_refused() as (port, good, refused):
            client = HttpClient(addresses=ALLOW_GOOD, resolver=Scripted([GOOD, REFUSED]))
            try:
                result = await outcome(client, f"http://mixed.test:{port}/?token=s3cr3t")
            finally:
                await client.close()
        return result, good.connections, refused.connections

    result, good, refused = asyncio.run(scenario())
    message = refusal(result).message
    assert "mixed.test resolved to 127.0.0.1 (loopback)" in message
    assert "s3cr3t" not in message
    assert (good, refused) == (0, 0)


@pytest.mark.parametrize("spelling", ["127.0.0.1", "2130706433", "127.1", "0x7f.0.0.1"])
def test_ip_literals_are_checked_in_every_spelling(spelling: str) -> None:
    """Literals skip the resolver; legacy spellings are read as the C library reads them."""

    async def scenario() -> tuple[HttpResponse | DiscoveryError, int]:
        server = Counting()
        async with serving(server, REFUSED) as port:
            client = HttpClient(addresses=AddressPolicy())
            try:
                result = await outcome(client, f"http://{spelling}:{port}/")
            finally:
                await client.close()
        return result, server.connections

    result, connections = asyncio.run(scenario())
    assert "127.0.0.1 (loopback)" in refusal(result).message
    assert connections == 0


def test_localhost_is_refused_until_loopback_is_allowed() -> None:
    """The system resolver's own answer for `localhost` goes through the check too."""

    async def scenario() -> tuple[HttpResponse | DiscoveryError, HttpResponse | DiscoveryError]:
        server = Counting()
        async with serving(server, REFUSED) as port:
            closed = HttpClient().restricted(AddressPolicy())
            opened = HttpClient().restricted(LOOPBACK_ALLOWED)
            try:
                refused = await outcome(closed, f"http://localhost:{port}/")
                assert server.connections == 0
                allowed = await outcome(opened, f"http://localhost:{port}/")
            finally:
                await closed.close()
                await opened.close()
        return refused, allowed

    refused, allowed = asyncio.run(scenario())
    assert "localhost resolved to" in refusal(refused).message
    assert isinstance(allowed, HttpResponse) and allowed.status == 200


def test_tls_verifies_the_url_host_name_not_the_address(tmp_path: Path) -> None:
    """The certificate names localhost and 127.0.0.1. Both names below resolve to
    127.0.0.1, so only a check of the name itself can tell them apart."""
    cert = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert.cert))

    async def scenario() -> tuple[HttpResponse | DiscoveryError, HttpResponse | DiscoveryError]:
        async with serving(Counting(), REFUSED, tls=cert.server_context()) as port:
            client = HttpClient(addresses=LOOPBACK_ALLOWED, resolver=Scripted([REFUSED]))
            try:
                named = await outcome(client, f"https://localhost:{port}/", trust)
                other = await outcome(client, f"https://other.test:{port}/", trust)
            finally:
                await client.close()
        return named, other

    named, other = asyncio.run(scenario())
    assert isinstance(named, HttpResponse) and named.status == 200
    assert isinstance(other, DiscoveryError) and other.reason == Reason.TLS_ERROR


def test_a_redirect_to_a_refused_address_is_not_followed() -> None:
    async def scenario() -> tuple[HttpResponse | DiscoveryError, int]:
        target = Counting()
        async with serving(target, REFUSED) as target_port:
            moved = f"HTTP/1.1 302 Found\r\nLocation: http://{REFUSED}:{target_port}/\r\n"
            bouncer = Counting((moved + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
            async with serving(bouncer, GOOD) as port:
                client = HttpClient(addresses=ALLOW_GOOD)
                try:
                    result = await outcome(client, f"http://{GOOD}:{port}/")
                finally:
                    await client.close()
        return result, target.connections

    result, connections = asyncio.run(scenario())
    assert isinstance(result, HttpResponse) and result.status == 302
    assert connections == 0


def test_restricted_clients_are_kept_per_policy_and_closed_with_their_parent() -> None:
    async def scenario() -> None:
        parent = HttpClient()
        child = parent.restricted(ALLOW_GOOD)
        assert parent.restricted(AddressPolicy((ipaddress.ip_network("127.0.0.2/32"),))) is child
        assert parent.restricted(AddressPolicy()) is not child
        server = Counting()
        async with serving(server, GOOD) as port:
            assert isinstance(await outcome(child, f"http://{GOOD}:{port}/"), HttpResponse)
        await parent.close()
        assert child._pool is None  # closed with the parent

    asyncio.run(scenario())
