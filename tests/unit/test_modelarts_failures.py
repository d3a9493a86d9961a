"""The failure table through the ModelArts provider (IAM login on plain HTTP, discovery on
the row's target), against the emulator."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from directservice.discovery.credentials import TokenCache
from directservice.emulator import EmulatorThread
from discovery_faults import ROW_IDS, ROWS, TABLE_EMULATOR, Row, check_row, endpoint_for

pytestmark = pytest.mark.unit

EMULATOR = TABLE_EMULATOR


async def reader(namespace: str, name: str) -> Mapping[str, str]:
    return {"username": "u", "password": "p", "domainName": "d"}  # TABLE_IAM's user


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_failure_table(emu: EmulatorThread, row: Row) -> None:
    provider = {
        "modelArts": {
            "endpoint": endpoint_for(emu, row),
            "iamEndpoint": emu.iam_url,
            "projectId": "p1",
            "serviceId": row.service,
            "credentialsSecretRef": {"name": "c"},
        }
    }
    check_row(emu, row, provider, namespace="ns", secrets=reader, token_cache=TokenCache())
