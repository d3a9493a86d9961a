"""How busy the event loop is: its sampled lag, and the process's Overloaded verdict.

A loop that is never late has CPU to spare; one whose polls start late by a large fraction
of their interval is overloaded (core/overload.py), and each DirectService then says so
with condition Overloaded.
"""

from __future__ import annotations

import asyncio
import logging

from directservice.core.overload import NO_VERDICT, Load, record_poll
from directservice.obs import metrics

PERIOD = 0.5  # s

log = logging.getLogger(__name__)


async def sample_loop_lag(period: float = PERIOD) -> None:
    """Observe directservice_event_loop_lag_seconds until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))


class LoopLoad:
    """The one Overloaded verdict of a process, fed by every poll's lateness."""

    def __init__(self) -> None:
        self.state: Load = NO_VERDICT

    @property
    def overloaded(self) -> bool | None:
        return self.state.overloaded

    def poll_started(self, lateness: float, interval: float) -> None:
        metrics.POLL_LATENESS.observe(lateness)
        was = self.state.overloaded
        now = asyncio.get_running_loop().time()
        self.state = record_poll(self.state, now, lateness, interval)
        if self.state.overloaded == was:
            return
        metrics.OVERLOAD_VERDICT.set(1 if self.state.overloaded else 0)
        if self.state.overloaded:
            log.warning("polls start late: the operator is overloaded, polls stretch")
        elif was:
            log.info("polls start on time again")
