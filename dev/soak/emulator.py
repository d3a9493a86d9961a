"""The benchmark's emulator process plus its fault admin API, callable from several threads
(the chaos and the restarts share one HTTP session)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.emulatorproc import NO_SERVICE, EmulatorProcess


class FaultingEmulator(EmulatorProcess):
    def __init__(
        self,
        workdir: Path,
        services: Mapping[str, Sequence[Mapping[str, Any]]],
        log_size: int = 1000,  # the soak counts requests per service; it reads no log
    ) -> None:
        super().__init__(workdir, services, log_size)
        self._lock = threading.Lock()

    def _admin(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        with self._lock:  # requests.Session is not safe to share between threads
            return super()._admin(method, path, body, params)

    def add_fault(self, fault: Mapping[str, Any]) -> int:
        """Queue a fault (see the emulator's faults.py); returns its id."""
        return int(self._admin("POST", "/admin/faults", dict(fault))["id"])

    def delete_fault(self, fault_id: int) -> None:
        self._admin("DELETE", f"/admin/faults/{fault_id}")

    def clear_faults(self) -> int:
        return int(self._admin("DELETE", "/admin/faults")["cleared"])

    def answers_by_status(self) -> dict[str, int]:
        """Requests answered since the last reset by HTTP status ("closed": no answer)."""
        answer = self._admin("GET", "/admin/requests", params={"service": NO_SERVICE})
        return {str(k): int(v) for k, v in answer["per_status"].items()}
