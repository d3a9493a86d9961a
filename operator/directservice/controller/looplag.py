"""The event loop's lag, sampled: how late a timer due every `PERIOD` seconds runs.

A loop that is never late has CPU to spare; one that is late by a large fraction of the
poll interval is overloaded (each DirectService then says so, condition Overloaded).
"""

from __future__ import annotations

import asyncio

from directservice.obs import metrics

PERIOD = 0.5  # s


async def sample_loop_lag(period: float = PERIOD) -> None:
    """Observe directservice_event_loop_lag_seconds until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))
