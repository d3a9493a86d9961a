"""The failure table through the PAI-EAS provider, against the emulator."""

from __future__ import annotations

import pytest

from directservice.emulator import EmulatorThread
from discovery_faults import ROW_IDS, ROWS, TABLE_EMULATOR, Row, check_row, endpoint_for

pytestmark = pytest.mark.unit

EMULATOR = TABLE_EMULATOR


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_failure_table(emu: EmulatorThread, row: Row) -> None:
    check_row(
        emu, row, {"paiEas": {"endpoint": endpoint_for(emu, row), "serviceName": row.service}}
    )
