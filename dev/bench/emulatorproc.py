"""The discovery emulator in its own process, so its CPU is neither the bench's nor hidden.

`python -m directservice.cli emulate --port N --config FILE`, driven over its admin API.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import requests

from devenv.paths import child_env
from devenv.procs import SingleProcess, free_port

NO_SERVICE = "-"  # a service name never configured: the log filter then returns counters only


class EmulatorProcess(SingleProcess):
    def __init__(
        self,
        workdir: Path,
        services: Mapping[str, Sequence[Mapping[str, Any]]],
        log_size: int = 1_000_000,
        also_listen: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.services = services
        self.log_size = log_size
        self.also_listen = tuple(also_listen)  # more loopback addresses, the same port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._session = requests.Session()
        self._session.trust_env = False  # loopback only, never through a proxy

    def start(self, timeout: float = 60.0) -> Self:
        config = self.workdir / "emulator-services.json"
        body = {"services": {name: {"instances": list(i)} for name, i in self.services.items()}}
        config.write_text(json.dumps(body))
        env = child_env(PYTHONUNBUFFERED="1")
        argv = [
            sys.executable, "-m", "directservice.cli", "emulate",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--config", str(config), "--request-log-size", str(self.log_size),
            *(arg for host in self.also_listen for arg in ("--also-listen", host)),
        ]  # fmt: skip
        self._launch(
            "emulator",
            argv,
            self.workdir / "emulator.log",
            what="the emulator's /healthz",
            ready=lambda: self._serving(self.url + "/healthz"),
            timeout=timeout,
            step=0.1,
            env=env,
        )
        return self

    def stop(self) -> None:
        super().stop()
        self._session.close()

    # -- admin API ---------------------------------------------------------------------

    def _admin(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        resp = self._session.request(method, self.url + path, json=body, params=params, timeout=120)
        if resp.status_code >= 400:
            raise RuntimeError(f"emulator {method} {path}: {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def put_service(self, name: str, instances: Sequence[Mapping[str, Any]]) -> None:
        self._admin("PUT", f"/admin/services/{quote(name, safe='')}", {"instances": instances})

    def delete_service(self, name: str) -> None:
        self._admin("DELETE", f"/admin/services/{quote(name, safe='')}")

    def per_service(self) -> dict[str, int]:
        """Requests answered per service since the last reset (no log transferred)."""
        answer = self._admin("GET", "/admin/requests", params={"service": NO_SERVICE})
        return {str(k): int(v) for k, v in answer["per_service"].items()}

    def polls_of(self, service: str) -> int:
        return self.per_service().get(service, 0)

    def log(self, service: str | None = None) -> list[dict[str, Any]]:
        """The request log (each entry has `service` and `time`, the unix time it was sent)."""
        answer = self._admin(
            "GET", "/admin/requests", params=None if service is None else {"service": service}
        )
        if answer.get("dropped"):
            print(f"  warning: the emulator log dropped {answer['dropped']} entries")
        entries: list[dict[str, Any]] = answer["log"]
        return entries

    def reset(self) -> None:
        self._admin("POST", "/admin/requests/reset")
