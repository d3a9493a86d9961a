"""The failure table through the ModelArts provider (IAM login on plain HTTP, discovery on
the row's target), against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

import pytest

from directservice.core.model import DiscoveryError
from directservice.discovery import parse_spec
from directservice.discovery.credentials import TokenCache
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import provider_for
from directservice.emulator import EmulatorThread
from discovery_faults import READ_TIMEOUT, ROWS, SMALL_CAP, Row, closed_port_url, services

pytestmark = pytest.mark.unit

IAM = {"users": [{"name": "u", "password": "p", "domain": "d"}]}


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread(services(), iam=IAM, tls=True) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: EmulatorThread) -> Iterator[None]:
    yield
    emu.clear_faults()


async def reader(namespace: str, name: str) -> Mapping[str, str]:
    return {"username": "u", "password": "p", "domainName": "d"}


def endpoint_for(emu: EmulatorThread, row: Row) -> str:
    if row.target == "closed":
        return closed_port_url()
    return emu.https_url if row.target == "tls" else emu.url


@pytest.mark.parametrize("row", ROWS, ids=[r.reason for r in ROWS])
def test_failure_table(emu: EmulatorThread, row: Row) -> None:
    spec = {
        "provider": {
            "modelArts": {
                "endpoint": endpoint_for(emu, row),
                "iamEndpoint": emu.iam_url,
                "projectId": "p1",
                "serviceId": row.service,
                "credentialsSecretRef": {"name": "c"},
            }
        },
        "timeouts": {"read": READ_TIMEOUT, "connect": "500ms"},
    }
    if row.fault is not None:
        emu.add_fault(service=row.service, **row.fault)
    provider = provider_for(
        parse_spec(spec), namespace="ns", secrets=reader, token_cache=TokenCache()
    )

    async def main() -> DiscoveryError:
        http = HttpClient(max_body_bytes=SMALL_CAP)
        try:
            with pytest.raises(DiscoveryError) as info:
                await provider.discover(http)
            return info.value
        finally:
            await http.close()

    error = asyncio.run(main())
    assert error.reason == row.reason, error
    for name, value in row.extra.items():
        assert getattr(error, name) == value
