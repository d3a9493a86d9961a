"""The `directservice` CLI without a cluster: discover, render, version, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from directservice.cli import EXIT_DISCOVERY, EXIT_ERROR, EXIT_OK, main
from directservice.emulator.runner import EmulatorThread

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        emu.set_instances(
            "svc",
            [
                {"ip": "10.9.0.1", "port": 8000, "weight": 100},
                {"ip": "10.9.0.2", "port": 8000, "weight": "0"},
                {"ip": "127.0.0.1", "port": 8000},
                {"ip": "10.9.0.3", "port": 8001},
            ],
        )
        yield emu


def _file(tmp_path: Path, endpoint: str, service: str = "svc") -> str:
    doc = {
        "apiVersion": "directservice.io/v1alpha1",
        "kind": "DirectService",
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"provider": {"paiEas": {"endpoint": endpoint, "serviceName": service}}},
    }
    path = tmp_path / "dsvc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_discover_prints_published_and_dropped(
    emulator: EmulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["discover", "-f", _file(tmp_path, emulator.url)]) == EXIT_OK
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "ready" in lines["10.9.0.1"]
    assert "drained (weight 0)" in lines["10.9.0.2"]
    assert "DROPPED" in lines["127.0.0.1:8000"] and "loopback" in lines["127.0.0.1:8000"]


def test_discover_failure_is_one_line_with_its_own_exit_code(
    emulator: EmulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["discover", "-f", _file(tmp_path, emulator.url, service="unknown")])
    err = capsys.readouterr().err
    assert code == EXIT_DISCOVERY
    assert err.count("\n") == 1 and "NotFound" in err


def test_render_prints_service_and_one_slice_per_port(
    emulator: EmulatorThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", "-f", _file(tmp_path, emulator.url)]) == EXIT_OK
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    service, *slices = docs
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["namespace"] == "ns"
    ports = sorted(s["ports"][0]["port"] for s in slices)
    assert ports == [8000, 8001]
    addresses = {a for s in slices for e in s["endpoints"] for a in e["addresses"]}
    assert addresses == {"10.9.0.1", "10.9.0.2", "10.9.0.3"}


def test_bad_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Nothing\n")
    assert main(["render", "-f", str(tmp_path / "bad.yaml")]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("directservice: error:") and err.count("\n") == 1


def test_console_script_prints_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "directservice.cli", "version"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == __import__("directservice").__version__
