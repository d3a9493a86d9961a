"""Operator restarts: SIGTERM (graceful) or SIGKILL, then a new OperatorProcess, timed until
it has polled every service again. `OperatorSlot` tells the sampler which process to read."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.env import Env
from devenv.operatorproc import OperatorProcess
from soak.book import AnswerBook
from soak.emulator import FaultingEmulator
from soak.plan import Restart

GRACE_SECONDS = 30.0  # how long a SIGTERM may take before the soak kills the process
RESYNC_TIMEOUT = 300.0


@dataclass(frozen=True)
class RestartRecord:
    signal: str
    at: float  # time.time() the signal was sent
    exited_after: float | None  # seconds until the old process ended (None: killed at grace)
    exit: str  # how it ended: "code 0", "signal 9", ...
    live_after: float  # seconds until the new process's liveness endpoint answered
    resynced_after: float | None  # seconds until it had polled every service (None: never)
    generation: int  # of the new process


class OperatorSlot:
    """The operator process the soak runs now, numbered by generation (0: the first)."""

    def __init__(self, env: Env) -> None:
        self._env = env
        self._lock = threading.Lock()
        self._current: tuple[int, OperatorProcess] | None = None
        self._next = 0

    def current(self) -> tuple[int, OperatorProcess] | None:
        with self._lock:
            return self._current

    def start(self) -> int:
        generation = self._next
        self._next += 1
        proc = self._env.start_operator(f"gen{generation:02d}")
        with self._lock:
            self._current = (generation, proc)
        return generation

    def release(self) -> OperatorProcess:
        """Stop sampling the current process and hand it over to be stopped."""
        with self._lock:
            assert self._current is not None
            proc = self._current[1]
            self._current = None
            return proc


def _ended(pid: int, timeout: float) -> tuple[float | None, str]:
    """Wait for our child `pid` to end without reaping it (Env.stop_operator reaps)."""
    started = time.monotonic()
    while True:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if info is not None:
            how = "code" if info.si_code == os.CLD_EXITED else "signal"
            return time.monotonic() - started, f"{how} {info.si_status}"
        if time.monotonic() - started > timeout:
            return None, "still running"
        time.sleep(0.05)


@dataclass
class Restarter:
    env: Env
    slot: OperatorSlot
    emulator: FaultingEmulator
    book: AnswerBook
    restarts: Sequence[Restart]
    origin: float
    fleet: Sequence[str]  # emulator service names that must be polled again
    records: list[RestartRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        for planned in self.restarts:
            if stop.wait(max(0.0, self.origin + planned.at - time.time())):
                return
            try:
                self.records.append(self.restart(planned.signal))
            except Exception as exc:
                self.errors.append(f"restart at {planned.at:.0f}s: {exc!r}")
                return  # without an operator the rest of the soak measures nothing

    def restart(self, sig: str) -> RestartRecord:
        proc = self.slot.release()
        pid = proc.pid
        began = time.time()
        outage = self.book.outage_began(began)
        # The process leads its own group (ManagedProcess); it is ours and not yet reaped.
        os.killpg(pid, signal.Signals[sig])
        exited_after, how = _ended(pid, GRACE_SECONDS)
        self.env.stop_operator()  # reaps it (and kills it if the grace ran out)
        before = self.emulator.per_service()
        generation = self.slot.start()
        live = time.time()
        print(f"  restart ({sig}): old process {how}; generation {generation} live", flush=True)
        resynced = self._resynced(before)
        # Given up waiting: the checks resume, and a service still not polled is then late.
        self.book.outage_ended(outage, resynced if resynced is not None else time.time())
        return RestartRecord(
            signal=sig,
            at=began,
            exited_after=exited_after,
            exit=how,
            live_after=live - began,
            resynced_after=None if resynced is None else resynced - began,
            generation=generation,
        )

    def _resynced(self, before: dict[str, int]) -> float | None:
        deadline = time.monotonic() + RESYNC_TIMEOUT
        while time.monotonic() < deadline:
            now = self.emulator.per_service()
            if all(now.get(name, 0) > before.get(name, 0) for name in self.fleet):
                return time.time()
            time.sleep(1.0)
        return None
