"""Providers driven with a canned discovery answer: the real decoding path, no network.

A provider's discover() makes one HTTP call; CannedHttp answers it at once, so the coroutine
never suspends and can be run to completion without an event loop (fast enough to call
tens of thousands of times a second from a fuzzer or a property test).
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from directservice.api.spec import Network
from directservice.core.entries import parse_ip
from directservice.core.model import Discovery
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.base import Provider
from directservice.discovery.credentials import SecretValue
from directservice.discovery.httpclient import HttpClient, HttpResponse

T = TypeVar("T")

FUZZ_TOKEN = "fuzz-token-0123456789"  # the Secret value a Token-auth provider sends


class CannedHttp(HttpClient):
    """Answers every request with one status and body; counts the requests."""

    def __init__(self, body: bytes, status: int = 200) -> None:
        super().__init__()
        self.body = body
        self.status = status
        self.requests = 0

    async def request(
        self,
        method: str,
        url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> HttpResponse:
        self.requests += 1
        return HttpResponse(status=self.status, headers={}, body=self.body, url=url)


async def token_secret(namespace: str, name: str) -> Mapping[str, SecretValue]:
    return {"token": FUZZ_TOKEN}


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that completes without suspending (else RuntimeError)."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise RuntimeError("the coroutine suspended: it waited on real I/O")


def provider(spec: Mapping[str, Any]) -> Provider:
    """The provider of a DirectService spec, reading Secrets from token_secret."""
    return provider_for(parse_spec(spec), namespace="fuzz", secrets=token_secret)


def discover(target: Provider, body: bytes, status: int = 200) -> Discovery:
    """One poll of `target` whose discovery call is answered with `body`."""
    return run_sync(target.discover(CannedHttp(body, status)))


def check_discovery(result: Discovery, allowed: tuple[Network, ...]) -> None:
    """What every accepted answer guarantees, whatever the input (AssertionError if not):
    canonical, allowed, unique ip:port; sorted; something serving."""
    keys = [(inst.ip, inst.port) for inst in result.instances]
    assert keys, "an accepted discovery publishes at least one instance"
    assert len(set(keys)) == len(keys), f"duplicate ip:port published: {keys}"
    assert list(result.instances) == sorted(result.instances), "instances are not sorted"
    assert any(inst.serving for inst in result.instances), "nothing serving was accepted"
    for inst in result.instances:
        assert parse_ip(inst.ip) == inst.ip, f"non-canonical address {inst.ip!r}"
        address = ipaddress.ip_address(inst.ip)
        assert any(address.version == n.version and address in n for n in allowed), inst.ip
        assert 1 <= inst.port <= 65535, inst.port
        assert inst.weight >= 0, inst.weight
