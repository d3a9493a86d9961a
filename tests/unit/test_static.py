"""The static provider: spec instances, checked like discovered ones, with no calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from directservice.core.model import Discovery, DiscoveryError, Instance
from directservice.discovery import parse_spec
from directservice.discovery.budget import RateBudgets
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import provider_for
from directservice.discovery.static import StaticProvider

pytestmark = pytest.mark.unit


def discover(instances: list[dict[str, Any]], **fields: Any) -> Discovery:
    spec = parse_spec({"provider": {"static": {"instances": instances}}, **fields})
    provider = provider_for(spec, budgets=RateBudgets())
    assert isinstance(provider, StaticProvider)

    async def main() -> Discovery:
        http = HttpClient()  # never used: no session is even created
        result = await provider.discover(http)
        assert http._pool is None
        return result

    return asyncio.run(main())


def test_instances_are_published_as_given() -> None:
    result = discover(
        [
            {"ip": "10.0.0.1", "port": 80},
            {"ip": "10.0.0.2", "port": 80, "weight": 0},
            {"ip": "10.0.0.3", "port": 81, "ready": False, "hostname": "c"},
            {"ip": "fd00::4", "port": 80, "weight": 2.5},
        ]
    )
    assert result.instances == (
        Instance("10.0.0.1", 80),
        Instance("10.0.0.2", 80, weight=0),
        Instance("10.0.0.3", 81, ready=False, hostname="c"),
        Instance("fd00::4", 80, weight=2.5),
    )


def test_bad_entries_are_dropped_like_discovered_ones() -> None:
    result = discover(
        [
            {"ip": "10.0.0.1", "port": 80},
            {"ip": "127.0.0.1", "port": 80},
            {"ip": "8.8.8.8", "port": 80},
            {"ip": "not-an-ip", "port": 80},
            {"ip": "10.0.0.5", "port": 80, "hostname": "Bad_Name"},
        ]
    )
    assert result.instances == (Instance("10.0.0.1", 80),)
    assert [d.entry for d in result.dropped] == [
        "127.0.0.1:80",
        "8.8.8.8:80",
        "not-an-ip:80",
        "10.0.0.5:80",
    ]


def test_allowed_cidrs_apply() -> None:
    result = discover([{"ip": "8.8.8.8", "port": 53}], allowedCIDRs=["0.0.0.0/0"])
    assert result.instances == (Instance("8.8.8.8", 53),)


@pytest.mark.parametrize(
    ("instances", "reason"),
    [
        ([{"ip": "127.0.0.1", "port": 80}], "NoValidEntries"),
        ([{"ip": "10.0.0.1", "port": 80, "weight": 0}], "AllWeightsZero"),
    ],
)
def test_the_last_known_good_rule_applies(instances: list[dict[str, Any]], reason: str) -> None:
    with pytest.raises(DiscoveryError) as info:
        discover(instances)
    assert info.value.reason == reason


def test_static_never_stretches() -> None:
    spec = parse_spec({"provider": {"static": {"instances": [{"ip": "10.0.0.1", "port": 1}]}}})
    provider = provider_for(spec, budgets=RateBudgets())
    assert provider.effective_interval(5.0) == 5.0
    provider.close()
