"""Fixtures for the end-to-end tier: the emulator and the operator as a real process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.controlplane import ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.emulator.runner import EmulatorThread
from support import running


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture(scope="session")
def operator(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The session's operator, cluster-wide. No test stops or restarts it: a test that needs
    to, or that needs other flags, runs an OperatorProcess of its own (test_restart.py)."""
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    with running(OperatorProcess(control_plane.kubeconfig, log)) as proc:
        yield proc
