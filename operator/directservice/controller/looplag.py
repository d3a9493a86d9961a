"""How busy the event loop is: its sampled lag, and the process's Overloaded verdict.

A loop that is never late has CPU to spare; one whose polls start late by a large fraction
of their interval is overloaded (core/overload.py), and each DirectService then says so
with condition Overloaded.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from directservice.core.allowance import Allowance
from directservice.core.overload import NO_VERDICT, Load, record_poll
from directservice.obs import metrics

PERIOD = 0.5  # s
# Status writes that only report the verdict, over every DirectService of the process: a
# turn of 3,000 DirectServices is then written in 150 s, without a burst of writes that
# would take the CPU the polls lack.
REPORT_BURST = 20
REPORT_REFILL = 0.05  # s per write

log = logging.getLogger(__name__)


async def sample_loop_lag(period: float = PERIOD) -> None:
    """Observe directservice_event_loop_lag_seconds until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        metrics.LOOP_LAG.observe(max(0.0, loop.time() - due))


class GcPauses:
    """Times the cyclic garbage collector's passes (directservice_gc_pause_seconds): a full
    pass over a large heap stops the event loop as surely as a busy handler."""

    def __init__(self) -> None:
        self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            generation = str(info.get("generation", "?"))
            metrics.child(metrics.GC_PAUSE, generation).observe(time.perf_counter() - self._started)


class LoopLoad:
    """The one Overloaded verdict of a process, fed by every poll's lateness."""

    def __init__(self) -> None:
        self.state: Load = NO_VERDICT
        self._reports = Allowance.full(REPORT_BURST, REPORT_REFILL)
        self.first_passes = 0  # poll loops whose first pass is still to come (a sync)

    @property
    def overloaded(self) -> bool | None:
        return self.state.overloaded

    def report_turn(self) -> bool:
        """May one more DirectService write a status that only reports the verdict?"""
        allowance, wait = self._reports.spend(asyncio.get_running_loop().time())
        if wait > 0:
            return False
        self._reports = allowance
        return True

    def poll_started(self, lateness: float, interval: float) -> None:
        metrics.POLL_LATENESS.observe(lateness)
        was = self.state.overloaded
        now = asyncio.get_running_loop().time()
        self.state = record_poll(self.state, now, lateness, interval, self.first_passes > 0)
        if self.state.overloaded == was:
            return
        metrics.OVERLOAD_VERDICT.set(1 if self.state.overloaded else 0)
        if self.state.overloaded:
            log.warning("polls start late: the operator is overloaded, polls stretch")
        elif was:
            log.info("polls start on time again")
