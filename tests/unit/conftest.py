"""Fixtures for the unit tier: emulators on loopback, a proxy-free HTTP session, and the
emulator's command line as a subprocess."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devenv.paths import child_env
from directservice.emulator import EmulatorThread

EMULATOR_MAIN = "import sys; from directservice.emulator import main; sys.exit(main())"


@pytest.fixture(scope="module")
def _module_emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorThread]:
    settings: dict[str, Any] = request.module.EMULATOR
    with EmulatorThread(**settings) as emulator:
        yield emulator


@pytest.fixture
def emu(_module_emulator: EmulatorThread) -> Iterator[EmulatorThread]:
    """The module's emulator, EmulatorThread(**EMULATOR) with the module's EMULATOR dict,
    started once per module; each test leaves it without queued faults or counted requests."""
    yield _module_emulator
    _module_emulator.clear_faults()
    _module_emulator.reset_requests()


@pytest.fixture
def config_emu(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EmulatorThread]:
    """A fresh emulator per test, started from a config file holding the module's CONFIG."""
    config = tmp_path / "emulator.yaml"
    config.write_text(request.module.CONFIG)
    with EmulatorThread(config=config) as emulator:
        yield emulator


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only, whatever proxy the environment sets
        yield session


@contextlib.contextmanager
def _emulator_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", EMULATOR_MAIN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def emulator_cli() -> Callable[..., contextlib.AbstractContextManager[subprocess.Popen[str]]]:
    """`with emulator_cli(*args) as proc:` runs the emulator's main() in a subprocess with
    those arguments (stdout and stderr piped), killed on the way out if still running."""
    return _emulator_process
