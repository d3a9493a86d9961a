"""Small process and port helpers shared by the local control plane and CoreDNS."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


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
