"""`directservice emulate`: argument parsing and a real run as a subprocess."""

from __future__ import annotations

import contextlib
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from directservice.emulator import main
from directservice.emulator.cli import build_parser

pytestmark = pytest.mark.unit

EmulatorCli = Callable[..., contextlib.AbstractContextManager[subprocess.Popen[str]]]


def test_parser_defaults_and_options() -> None:
    defaults = build_parser().parse_args([])
    assert (defaults.config, defaults.host, defaults.port) == (None, "127.0.0.1", 8080)
    assert defaults.log_requests is False
    args = build_parser().parse_args(
        ["--config", "c.yaml", "--host", "0.0.0.0", "--port", "0", "--log-requests"]
    )
    assert (args.config, args.host, args.port, args.log_requests) == ("c.yaml", "0.0.0.0", 0, True)


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--port", "eighty"])
    assert exited.value.code == 2


def test_unreadable_or_invalid_config_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("services: {s: {instances: 3}}\n")
    assert main(["--config", str(bad)]) == 2
    assert "must be a list" in capsys.readouterr().err


def test_runs_until_sigterm(tmp_path: Path, emulator_cli: EmulatorCli) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"services": {"s": {"instances": [{"ip": "10.0.0.1", "port": 80}]}}}')
    with emulator_cli("--config", str(config), "--port", "0", "--log-requests") as proc:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        with requests.Session() as http:
            http.trust_env = False
            path = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/s"
            items = http.get(url + path, timeout=5).json()["endpoints"]["items"]
        assert items == [{"app": "s", "ip": "10.0.0.1", "port": 80, "weight": 100}]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr is not None
        assert f"GET {path} -> 200" in proc.stderr.read()


def test_also_listen_serves_one_emulator_on_more_loopback_addresses(
    emulator_cli: EmulatorCli,
) -> None:
    with emulator_cli(
        "--port", "0", "--also-listen", "127.0.0.2", "--also-listen", "127.0.0.3"
    ) as proc:
        assert proc.stdout is not None
        port = proc.stdout.readline().split()[-1].rsplit(":", 1)[1]
        with requests.Session() as http:
            http.trust_env = False
            for host in ("127.0.0.2", "127.0.0.3", "127.0.0.1"):
                assert http.get(f"http://{host}:{port}/healthz", timeout=5).ok
            with pytest.raises(requests.ConnectionError):  # only the addresses asked for
                http.get(f"http://127.0.0.4:{port}/healthz", timeout=5)
            # One emulator behind all three: one request log, reset once.
            http.post(f"http://127.0.0.1:{port}/admin/requests/reset", timeout=5)
            path = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/none"
            for host in ("127.0.0.2", "127.0.0.3"):
                http.get(f"http://{host}:{port}{path}", timeout=5)
            log = http.get(f"http://127.0.0.1:{port}/admin/requests", timeout=5).json()["log"]
        assert [r["service"] for r in log] == ["none", "none"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
