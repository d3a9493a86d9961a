"""The reference client's calls against real HTTP servers on loopback: where calls go, what
is retried and where, the Authorization header, and the error when every attempt fails."""

from __future__ import annotations

import ast
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import directservice.client
from directservice.client import CallFailed, DirectClient, Instance, NoInstancesError

pytestmark = pytest.mark.unit


class InstanceServer(http.server.ThreadingHTTPServer):
    """One instance: answers POSTs per `mode` (ok: 200 with its name, error: 503, notfound:
    404, hang: no answer until released) and keeps every request it got."""

    daemon_threads = True

    def __init__(self, name: str, ip: str) -> None:
        super().__init__((ip, 0), _Handler)
        self.name = name
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()

    @property
    def instance(self) -> Instance:
        return Instance(str(self.server_address[0]), self.server_address[1])


class _Handler(http.server.BaseHTTPRequestHandler):
    server: InstanceServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append({"path": self.path, "headers": self.headers, "body": body})
        if self.server.mode == "hang":
            self.server.release.wait(30)
            return
        status = {"ok": 200, "error": 503, "notfound": 404}[self.server.mode]
        answer = self.server.name.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def servers() -> Iterator[list[InstanceServer]]:
    # Each on an address of its own (all of 127/8 is loopback), as instances are.
    started = [InstanceServer(name, f"127.0.0.{n}") for n, name in enumerate("abc", 1)]
    for server in started:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield started
    for server in started:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def refusing() -> Iterator[Instance]:
    """An address where nothing listens: bound, so no one else takes the port meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield Instance("127.0.0.1", sock.getsockname()[1])


class Fixed:
    def __init__(self, *instances: Instance) -> None:
        self.found = tuple(sorted(instances))

    def instances(self) -> tuple[Instance, ...]:
        return self.found


def client(*instances: Instance, **options: Any) -> DirectClient:
    return DirectClient("mnist", "default", resolver=Fixed(*instances), **options)


def by_name(servers: list[InstanceServer]) -> dict[Instance, str]:
    return {s.instance: s.name for s in servers}


def test_calls_go_round_the_instances_and_say_who_answered(servers: list[InstanceServer]) -> None:
    direct = client(*(s.instance for s in servers))
    answers = [direct.call(b"{}") for _ in range(6)]
    assert all(a.status == 200 and a.attempts == 1 for a in answers)
    assert all(a.body.decode() == by_name(servers)[a.instance] for a in answers)
    assert [len(s.requests) for s in servers] == [2, 2, 2]
    assert {r["path"] for s in servers for r in s.requests} == {"/api/predict/mnist"}


@pytest.mark.parametrize("mode", ["error", "hang", "refused"])
def test_a_failed_attempt_is_retried_on_another_instance(
    servers: list[InstanceServer], refusing: Instance, mode: str
) -> None:
    bad, good = servers[0], servers[1]
    bad.mode = mode
    first = refusing if mode == "refused" else bad.instance
    direct = client(first, good.instance, timeout=0.3)
    # Calls alternate between the two, so within two calls one starts on the bad instance.
    answers = [direct.call(b"x") for _ in range(2)]
    assert {a.instance for a in answers} == {good.instance}
    assert sorted(a.attempts for a in answers) == [1, 2]
    assert len(good.requests) == 2
    assert len(bad.requests) == (0 if mode == "refused" else 1)


class Weights:
    def __init__(self, published: dict[str, float]) -> None:
        self.published = published

    def weights(self) -> dict[str, float]:
        return self.published


def test_the_retry_skips_the_instance_the_weights_favour(servers: list[InstanceServer]) -> None:
    heavy, light = servers[0], servers[1]
    heavy.mode = "error"
    favour = Weights({heavy.instance.ip: 100, light.instance.ip: 1})
    direct = client(heavy.instance, light.instance, weights=favour)
    answer = direct.call(b"x")
    assert (answer.instance, answer.attempts) == (light.instance, 2)
    assert (len(heavy.requests), len(light.requests)) == (1, 1)


def test_a_client_error_is_an_answer_not_a_failure(servers: list[InstanceServer]) -> None:
    for server in servers:
        server.mode = "notfound"
    answer = client(*(s.instance for s in servers)).call(b"x")
    assert (answer.status, answer.attempts) == (404, 1)
    assert sum(len(s.requests) for s in servers) == 1


def test_when_every_attempt_fails_each_went_to_another_instance(
    servers: list[InstanceServer], refusing: Instance
) -> None:
    servers[0].mode, servers[1].mode = "error", "hang"
    direct = client(servers[0].instance, servers[1].instance, refusing, timeout=0.3)
    with pytest.raises(CallFailed, match="all 3 attempts failed") as failed:
        direct.call(b"x")
    reasons = {f.instance: f.reason for f in failed.value.failures}
    assert reasons == {
        servers[0].instance: "HTTP 503",
        servers[1].instance: "timed out",
        refusing: "connection refused",
    }
    assert [f.status for f in failed.value.failures].count(503) == 1


def test_more_attempts_than_instances_come_back_round(servers: list[InstanceServer]) -> None:
    for server in servers[:2]:
        server.mode = "error"
    with pytest.raises(CallFailed) as failed:
        client(servers[0].instance, servers[1].instance, attempts=5).call(b"x")
    tried = [f.instance for f in failed.value.failures]
    assert len(tried) == 5
    assert len(set(tried[:2])) == 2 and len(set(tried[2:4])) == 2  # both, then both again
    assert len(servers[0].requests) + len(servers[1].requests) == 5


def test_authorization_is_the_raw_token_exactly_when_given(servers: list[InstanceServer]) -> None:
    instance = servers[0].instance
    client(instance, token="eas-token==").call(b"x")
    client(instance).call(b"x")
    with_token, without = servers[0].requests
    assert with_token["headers"].get_all("Authorization") == ["eas-token=="]
    assert without["headers"].get("Authorization") is None


def test_predict_sends_json_and_honours_path_and_headers(servers: list[InstanceServer]) -> None:
    direct = client(servers[0].instance, path="/api/predict/mnist_saved_model_example")
    direct.predict({"inputs": [1, 2]}, headers={"X-Trace": "t1"})
    direct.predict("raw text", path="/other")
    sent, raw = servers[0].requests
    assert (sent["path"], json.loads(sent["body"])) == (
        "/api/predict/mnist_saved_model_example",
        {"inputs": [1, 2]},
    )
    assert (sent["headers"]["Content-Type"], sent["headers"]["X-Trace"]) == (
        "application/json",
        "t1",
    )
    assert (raw["path"], raw["body"], raw["headers"].get("Content-Type")) == (
        "/other",
        b"raw text",
        None,
    )


def test_threads_share_one_client_and_the_rotation(servers: list[InstanceServer]) -> None:
    direct = client(servers[0].instance, servers[1].instance)
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(25):
                direct.call(b"x")
        except BaseException as err:  # reported to the test thread
            errors.append(err)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [len(servers[0].requests), len(servers[1].requests)] == [50, 50]


def test_nothing_to_call_is_a_clear_error() -> None:
    with pytest.raises(NoInstancesError):
        client().call(b"x")
    with pytest.raises(ValueError, match="attempts"):
        client(Instance("127.0.0.1", 1), attempts=0)


# -- standing alone -----------------------------------------------------------------------


def test_the_client_imports_only_the_standard_library_and_itself() -> None:
    package = Path(directservice.client.__file__).parent
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]} if node.level == 0 else set()
            else:
                continue
            assert roots <= sys.stdlib_module_names | {"__future__"}, (module.name, roots)


def test_a_copy_under_another_name_works_without_site_packages(tmp_path: Path) -> None:
    shutil.copytree(Path(directservice.client.__file__).parent, tmp_path / "eas_direct")
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import eas_direct; "
        "print(eas_direct.DirectClient.__name__, 'directservice' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["DirectClient", "False"]
