"""The health checker in a child process, behind the same watch/unwatch/failing interface.

Why a process: a TCP check costs about 130 µs of CPU, half of it Python. On a thread of the
operator's own process, 2,000 checks/s contend for one GIL with the poll loop, and each
system call of a check waits for the GIL to come back: checks then start late (seconds at
1,000 DirectServices) and a failing instance leaves DNS later than its bound. In a child,
the checks have an interpreter and a core of their own.

The parent keeps what the poll loops need in memory: each key's targets and failing set,
so `failing` never waits on the child. Messages are pickled tuples over the child's stdin
and stdout (multiprocessing.connection framing); both sides are this package:

    parent -> child   ("watch", key, seq, spec, targets)   ("unwatch", key)   ("stop",)
    child -> parent   ("failing", key, seq, endpoints)     ("counts", events)

`seq` numbers the watches of a key: a failing set the child sent for an older watch is
dropped, and the child sends its set after every watch, so the parent's view is the
child's. A child that dies is restarted (directservice_health_checker_restarts_total), sent
every watch again, and starts each target healthy, as at operator start. The child starts
with the first watch: an operator whose DirectServices check nothing runs none (it costs
about 27 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import EndpointId
from directservice.health.counts import Exported
from directservice.obs import logs, metrics

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0  # s between a child's death and its successor
STOP_TIMEOUT = 5.0  # s a child gets to stop before it is killed

Message = tuple[object, ...]


@dataclass
class _Watch:
    spec: HealthCheckSpec
    targets: dict[EndpointId, bool]
    on_change: Callable[[], None]
    seq: int
    failing: frozenset[EndpointId] = frozenset()


class _Child:
    """One child process and the two threads that talk to it (pipes may block; the poll
    loop never does)."""

    def __init__(self, max_in_flight: int, on_message: Callable[[Message], None]) -> None:
        level, fmt = logs.current()
        # The parent's sys.path: the child imports this package from wherever the parent did.
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "directservice.health.child", str(max_in_flight), level, fmt],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._to_child = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self._from_child = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self._outbox: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._on_message = on_message
        self.sender = threading.Thread(target=self._send_all, name="health-send", daemon=True)
        self.receiver = threading.Thread(target=self._receive_all, name="health-recv", daemon=True)
        self.sender.start()
        self.receiver.start()

    def send(self, message: Message) -> None:
        self._outbox.put(message)

    def _send_all(self) -> None:
        with contextlib.suppress(OSError):  # the child is gone: its successor gets it all
            while (message := self._outbox.get()) is not None:
                self._to_child.send(message)
        self._to_child.close()

    def _receive_all(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                self._on_message(self._from_child.recv())
        self._from_child.close()
        self._on_message(("gone",))

    def stop(self) -> None:
        """Asks the child to stop and waits for it (blocking: call from a thread)."""
        self._outbox.put(("stop",))
        self._outbox.put(None)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.sender.join()
        self.receiver.join()


class CheckerProcess:
    """HealthChecker's interface for the poll loops; the checks run in a child process."""

    def __init__(self, max_in_flight: int = 4096) -> None:
        self._max_in_flight = max(1, max_in_flight)
        self._watches: dict[str, _Watch] = {}
        self._seq = 0
        self._counts = Exported()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._child: _Child | None = None
        self._restarting = False  # a child died: its successor starts after RESTART_DELAY
        self._closed = False

    def start(self) -> None:
        """Binds to the loop whose tasks call watch and get on_change; the child itself
        starts with the first watch."""
        self._loop = asyncio.get_running_loop()

    def watch(
        self,
        key: str,
        spec: HealthCheckSpec,
        targets: Mapping[EndpointId, bool],
        on_change: Callable[[], None],
    ) -> None:
        """As HealthChecker.watch: targets kept keep their verdict, new ones start healthy."""
        if self._closed:
            raise RuntimeError("the health checker is closed")
        self._seq += 1
        old = self._watches.get(key)
        kept = old.failing & targets.keys() if old is not None else frozenset()
        self._watches[key] = _Watch(spec, dict(targets), on_change, self._seq, kept)
        if self._child is not None:
            self._child.send(("watch", key, self._seq, spec, dict(targets)))
        elif self._loop is not None and not self._restarting:
            self._spawn()  # tells the new child every watch, this one too

    def unwatch(self, key: str) -> None:
        if self._watches.pop(key, None) is not None and self._child is not None:
            self._child.send(("unwatch", key))

    def failing(self, key: str) -> frozenset[EndpointId]:
        watch = self._watches.get(key)
        return watch.failing if watch is not None else frozenset()

    async def close(self) -> None:
        self._closed = True
        self._watches.clear()
        child, self._child = self._child, None
        if child is not None:
            await asyncio.to_thread(child.stop)
            self._counts.forget_in_flight()

    # The child's side of things, on the loop.

    def _spawn(self) -> None:
        child = _Child(self._max_in_flight, lambda message: self._on_message(child, message))
        self._child = child
        for key, watch in self._watches.items():
            child.send(("watch", key, watch.seq, watch.spec, watch.targets))

    def _on_message(self, child: _Child, message: Message) -> None:
        """On the receiving thread: counts are replayed there (the Prometheus client is
        thread-safe), the rest hops to the loop."""
        if message[0] == "counts" and isinstance(message[1], list):
            self._counts.replay(message[1])
        elif self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                self._loop.call_soon_threadsafe(self._apply, child, message)

    def _apply(self, child: _Child, message: Message) -> None:
        if child is not self._child:
            return  # from a child already replaced
        if message[0] == "gone":
            self._gone(child)
            return
        _, key, seq, endpoints = message
        watch = self._watches.get(str(key))
        if watch is None or watch.seq != seq or not isinstance(endpoints, frozenset):
            return
        failing = endpoints & watch.targets.keys()
        if failing != watch.failing:
            watch.failing = failing
            try:
                watch.on_change()
            except Exception:
                log.exception("health on_change callback raised")

    def _gone(self, child: _Child) -> None:
        self._child = None
        self._counts.forget_in_flight()
        if self._closed:
            return
        log.error(
            "the health checker's process ended; restarting it in %.0f s, every target "
            "healthy until checked again",
            RESTART_DELAY,
        )
        metrics.HEALTH_CHECKER_RESTARTS.inc()
        assert self._loop is not None
        self._loop.run_in_executor(None, child.stop)  # reaps it, and joins its threads
        self._restarting = True
        self._loop.call_later(RESTART_DELAY, self._respawn)
        for watch in self._watches.values():
            if watch.failing:
                watch.failing = frozenset()
                watch.on_change()

    def _respawn(self) -> None:
        self._restarting = False
        if not self._closed and self._child is None and self._watches:
            self._spawn()
