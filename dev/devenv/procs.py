"""Process, port and lifecycle helpers shared by the dev environment's servers.

`ManagedProcess` runs one server process; `Lifecycle` gives anything with start() and stop()
the `with` protocol; `SingleProcess` is a Lifecycle that owns one ManagedProcess (the
operator, the bench's emulator process).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

# Loopback checks never go through a proxy named in the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(*, udp: bool = False) -> int:
    """A loopback port that is free right now (for TCP, and for UDP too when asked).

    There is a window between closing the probe socket and the server binding it; on a test
    machine that race is rare enough not to warrant retries.
    """
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dgram:
                try:
                    dgram.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free loopback port found")


class ManagedProcess:
    """A server process in its own session (so teardown reaches any children it forks).

    Output goes to a log file; `tail()` reads it back for error messages.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        with log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def check_alive(self) -> None:
        """Raise with the log tail if the process has exited."""
        code = self._proc.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no log at {self.log_path})"
        body = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{body}"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout`, and reap the leader.

        Idempotent. The leader is reaped last: until then its pid, which is also the group
        id, cannot be reused, so the final SIGKILL to the group cannot hit a stranger.
        """
        if self._proc.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        if not self._exited_within(timeout):
            self._signal_group(signal.SIGKILL)
            self._exited_within(None)
        self._signal_group(signal.SIGKILL)  # any child that outlived the leader
        self._proc.wait()

    def _exited_within(self, timeout: float | None) -> bool:
        """Wait for the leader to exit without reaping it (WNOWAIT leaves a zombie)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            flags = os.WEXITED | os.WNOWAIT | (os.WNOHANG if deadline is not None else 0)
            if os.waitid(os.P_PID, self._proc.pid, flags) is not None:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)


def wait_until(what: str, check: Callable[[], bool], timeout: float, step: float = 0.05) -> None:
    """Poll `check()` until it returns true; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(step)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether a GET of `url` answers 200 (refused, reset, timed out or any other status: no)."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except OSError:  # URLError and HTTPError are OSErrors too
        return False


class Lifecycle(ABC):
    """start() and an idempotent stop(); `with` starts the object and always stops it.

    A start() that fails part-way stops what it did start (`_stopped_on_failure`), so neither
    `with` nor a bare start() leaves a process or a temp dir behind when it raises.
    """

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.contextmanager
    def _stopped_on_failure(self) -> Iterator[None]:
        """Around the body of start(): if it raises, stop() and re-raise."""
        try:
            yield
        except BaseException:
            self.stop()
            raise


class SingleProcess(Lifecycle):
    """A Lifecycle that owns one ManagedProcess: `_launch()` in start(), killed by stop()."""

    stop_timeout = 5.0  # SIGTERM grace before SIGKILL
    _proc: ManagedProcess | None = None

    @property
    def pid(self) -> int:
        return self._running().pid

    def tail(self, lines: int = 60) -> str:
        """The end of the process's log ("" before start and after stop)."""
        return self._proc.tail(lines) if self._proc is not None else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=self.stop_timeout)
            self._proc = None

    def _running(self) -> ManagedProcess:
        if self._proc is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return self._proc

    def _launch(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        what: str,
        ready: Callable[[], bool],
        timeout: float,
        step: float = 0.05,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start the process, then wait until `ready()`; on failure stop it and re-raise.

        A timeout carries the log tail as a note (an early exit has it in its message).
        """
        if self._proc is not None:
            raise RuntimeError(f"{name} already started")
        with self._stopped_on_failure():
            self._proc = ManagedProcess(name, argv, log_path, env=env)
            try:
                wait_until(what, ready, timeout, step)
            except TimeoutError as err:
                err.add_note(self.tail())
                raise

    def _serving(self, url: str) -> bool:
        """Raise with the log tail if the process has exited; else whether `url` answers 200."""
        self._running().check_alive()
        return http_ok(url)
