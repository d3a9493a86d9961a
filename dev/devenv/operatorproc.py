"""The operator as a real process (`directservice run`), for tests, the demo and benchmarks."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from devenv.paths import child_env
from devenv.procs import ManagedProcess, free_port, wait_until


class OperatorProcess:
    """Runs `python -m directservice.cli run` against a kubeconfig until stopped."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self._env = env or {}
        self._proc: ManagedProcess | None = None

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        env = child_env(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        env.update(self._env)
        argv = [
            sys.executable, "-m", "directservice.cli", "run",
            "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-address", f"127.0.0.1:{self.metrics_port}",
            *self.extra_args,
        ]  # fmt: skip
        self._proc = ManagedProcess("operator", argv, self.log_path, env=env)
        wait_until("the operator's liveness endpoint", self._live, timeout, step=0.2)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def _live(self) -> bool:
        assert self._proc is not None
        self._proc.check_alive()
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def metrics_text(self) -> str:
        """The operator's Prometheus exposition, as scraped over HTTP."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def tail(self, lines: int = 60) -> str:
        return self._proc.tail(lines) if self._proc else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(timeout=15.0)
            self._proc = None

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
