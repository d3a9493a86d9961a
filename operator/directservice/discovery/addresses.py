"""Where discovery calls may connect: checked after DNS, and connected to exactly as checked.

A DirectService author picks the discovery URL. The operator's host allowlist bounds the
names (controller/config.py); this bounds where a name may lead. Loopback, link-local,
unspecified, multicast and cloud metadata addresses are refused unless the operator's
configuration allows a network holding them (--allow-discovery-cidr).

The check runs inside the resolver that aiohttp's connector uses, and aiohttp connects to the
addresses its resolver returned, so there is no second lookup between check and connect: a
name whose answer changes (DNS rebinding) is checked on every answer it gives. IP literals
never reach a resolver, so HttpClient checks them itself before the request.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult

from directservice.api.spec import Network
from directservice.core.entries import IPAddress, refused_kind

# 0.0.0.0/8 is "this network": a connect to any of it may reach the host itself.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")
# NAT64 (RFC 6052): on a network with a NAT64 gateway, 64:ff9b::a9fe:a9fe is 169.254.169.254.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(OSError):
    """A discovery host led to an address the operator does not connect to. An OSError, since
    aiohttp passes a resolver's OSError on (as ClientConnectorDNSError.os_error)."""


def _kind(address: IPAddress) -> str | None:
    if isinstance(address, ipaddress.IPv4Address):
        if address in _THIS_NETWORK:
            return "unspecified"
        if address == _BROADCAST:
            return "broadcast"
    return refused_kind(address)


def _views(address: IPAddress) -> tuple[IPAddress, ...]:
    """The address, and the IPv4 address it stands for when it embeds one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return (address, address.ipv4_mapped)
        if address in _NAT64:
            return (address, ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return (address,)


@dataclass(frozen=True)
class AddressPolicy:
    """The networks discovery may connect to although their kind is refused."""

    allowed: tuple[Network, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` may not be connected to ("loopback", ...), or None."""
        for view in _views(ipaddress.ip_address(address.packed)):  # without a zone index
            kind = _kind(view)
            if kind is not None and not self._allows(view):
                return kind
        return None

    def _allows(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.allowed)

    def check(self, host: str, ip: str) -> None:
        """Raise AddressRefused when `host`, found at `ip`, may not be connected to. The
        message names both, and nothing else of the URL (no query, no user info)."""
        message = _refusal_message(self, host, ip)
        if message is not None:
            raise AddressRefused(message)

    def check_literal(self, host: str) -> None:
        """check() for a URL's host that is an IP literal, legacy IPv4 spellings ("2130706433",
        "127.1", "0x7f.1") read as the C library reads them; a name passes (the resolver
        checks where it leads)."""
        message = _literal_refusal(self, host)
        if message is not None:
            raise AddressRefused(message)


# Every poll of a DirectService asks again about the same host and address: cached, since
# parsing an address costs more than the rest of the request's checks together.
@functools.lru_cache(maxsize=4096)
def _refusal_message(policy: AddressPolicy, host: str, ip: str) -> str | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return f"{host} resolved to {ip!r}, which is no IP address"
    kind = policy.refusal(address)
    if kind is None:
        return None
    where = ip if host == ip else f"{host} resolved to {ip}"
    return (
        f"{where} ({kind}), an address the operator does not connect to"
        " unless --allow-discovery-cidr allows it"
    )


@functools.lru_cache(maxsize=4096)
def _literal_refusal(policy: AddressPolicy, host: str) -> str | None:
    try:
        return _refusal_message(policy, host, str(ipaddress.ip_address(host)))
    except ValueError:
        pass
    try:
        legacy = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None  # a name
    return _refusal_message(policy, host, str(legacy))


class CheckingResolver(AbstractResolver):
    """A resolver that passes on an answer only when every address in it is allowed; one
    refused address refuses the whole answer (a real provider endpoint never has one)."""

    def __init__(self, policy: AddressPolicy, base: AbstractResolver) -> None:
        self.policy = policy
        self._base = base

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._base.resolve(host, port, family)
        for answer in answers:
            self.policy.check(host, answer["host"])
        return answers

    async def close(self) -> None:
        await self._base.close()
