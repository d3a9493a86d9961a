"""An answer that repeats byte for byte is not parsed again; any other answer is."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.base import AnswerCache
from directservice.discovery.httpclient import HttpResponse


class Answers:
    """Stands in for the HTTP client: hands out the bodies it is given, in order."""

    def __init__(self, *bodies: bytes) -> None:
        self.bodies = list(bodies)

    async def request(self, method: str, url: str, **_: Any) -> HttpResponse:
        return HttpResponse(200, {}, self.bodies.pop(0), url)


def upstreams(*ips: str) -> bytes:
    return json.dumps({"endpoints": {"items": [{"ip": ip, "port": 80} for ip in ips]}}).encode()


def discover_all(http: Answers) -> list[Discovery]:
    spec = parse_spec(
        {
            "provider": {"paiEas": {"endpoint": "http://eas.test", "serviceName": "svc"}},
            "port": {"name": "http"},
        }
    )
    provider = provider_for(spec)
    return [asyncio.run(provider.discover(http)) for _ in range(len(http.bodies))]  # type: ignore[arg-type]


def test_identical_bytes_give_the_same_answer_without_parsing() -> None:
    first, second, third = discover_all(
        Answers(upstreams("10.0.0.1"), upstreams("10.0.0.1"), upstreams("10.0.0.2"))
    )
    assert second is first  # not parsed again
    assert third is not first and [i.ip for i in third.instances] == ["10.0.0.2"]


def test_a_failed_parse_is_not_kept() -> None:
    cache = AnswerCache()
    calls = []

    def failing() -> Discovery:
        calls.append(1)
        raise DiscoveryError("InvalidResponse", "bad")  # type: ignore[arg-type]

    for _ in range(2):
        with pytest.raises(DiscoveryError):
            cache.parse(b"x", failing)
    assert len(calls) == 2
