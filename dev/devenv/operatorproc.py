"""The operator as a real process (`directservice run`), for tests, the demo and benchmarks."""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from devenv.paths import child_env
from devenv.procs import SingleProcess, free_port

# The emulator and the test servers listen on loopback, which a real operator refuses both
# as a discovery host and as an address: the opt-in a development operator needs.
LOOPBACK_DISCOVERY_ARGS = (
    "--allowed-host=127.0.0.1",
    "--allowed-host=localhost",
    "--allowed-host=::1",
    "--allow-discovery-cidr=127.0.0.0/8",
    "--allow-discovery-cidr=::1/128",
)


class OperatorProcess(SingleProcess):
    """Runs `python -m <module> run` against a kubeconfig until stopped.

    `module` is `directservice.cli` unless a caller needs another entry point with the same
    `run` arguments, or DEVENV_OPERATOR_MODULE names one for every operator a run starts
    (`devenv.traced`, say, to find what grows in a soak); `extra_args` follow the loopback
    liveness and metrics addresses and, unless `loopback_discovery` is False,
    LOOPBACK_DISCOVERY_ARGS.
    """

    stop_timeout = 15.0  # more SIGTERM grace than the default before SIGKILL

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        module: str | None = None,
        loopback_discovery: bool = True,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        loopback = LOOPBACK_DISCOVERY_ARGS if loopback_discovery else ()
        self.extra_args = [*loopback, *extra_args]
        self.module = module or os.environ.get("DEVENV_OPERATOR_MODULE") or "directservice.cli"
        self.liveness_port = free_port()
        self.metrics_port = free_port()
        self._env = env or {}

    def start(self, timeout: float = 60.0) -> Self:
        env = child_env(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        env.update(self._env)
        argv = [
            sys.executable, "-m", self.module, "run",
            "--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz",
            "--metrics-address", f"127.0.0.1:{self.metrics_port}",
            *self.extra_args,
        ]  # fmt: skip
        self._launch(
            "operator",
            argv,
            self.log_path,
            what="the operator's liveness endpoint",
            ready=self._live,
            timeout=timeout,
            step=0.2,
            env=env,
        )
        return self

    def _live(self) -> bool:
        return self._serving(f"http://127.0.0.1:{self.liveness_port}/healthz")

    def metrics_text(self) -> str:
        """The operator's Prometheus exposition, as scraped over HTTP."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())
