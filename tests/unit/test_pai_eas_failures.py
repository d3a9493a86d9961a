"""The failure table through the PAI-EAS provider, against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from directservice.core.model import DiscoveryError
from directservice.discovery import parse_spec
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import provider_for
from directservice.emulator import EmulatorThread
from discovery_faults import READ_TIMEOUT, ROWS, SMALL_CAP, Row, closed_port_url, services

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorThread]:
    with EmulatorThread(services(), tls=True) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def _clean(emu: EmulatorThread) -> Iterator[None]:
    yield
    emu.clear_faults()


@pytest.mark.parametrize("row", ROWS, ids=[r.reason for r in ROWS])
def test_failure_table(emu: EmulatorThread, row: Row) -> None:
    endpoint = {"closed": closed_port_url(), "tls": emu.https_url}.get(row.target, emu.url)
    spec = {
        "provider": {"paiEas": {"endpoint": endpoint, "serviceName": row.service}},
        "timeouts": {"read": READ_TIMEOUT, "connect": "500ms"},
    }
    if row.fault is not None:
        emu.add_fault(service=row.service, **row.fault)
    provider = provider_for(parse_spec(spec))

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
