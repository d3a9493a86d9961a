"""The reference client's balancing: smooth weighted round robin, drained instances, and the
published weights read from a loopback API server (plain HTTP and HTTPS), equal on failure."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from directservice.client import (
    DirectClient,
    EndpointSliceWeights,
    Instance,
    KubeApi,
    NoInstancesError,
    SmoothWeightedPicker,
    instance_weights,
    parse_weights,
)

pytestmark = pytest.mark.unit

PODS = tuple(Instance(f"10.0.0.{n}", 8080) for n in range(1, 5))


def picks(picker: SmoothWeightedPicker[str], count: int) -> str:
    return "".join(picker.pick() for _ in range(count))


def test_picks_are_spread_in_the_smooth_order() -> None:
    picker = SmoothWeightedPicker({"a": 5, "b": 1, "c": 1})
    assert picks(picker, 14) == "aabacaa" * 2


@pytest.mark.parametrize("weights", [{"a": 3, "b": 2, "c": 7, "d": 1}, {"a": 1, "b": 1, "c": 1}])
def test_each_key_gets_exactly_its_weight_over_a_cycle(weights: dict[str, int]) -> None:
    picker = SmoothWeightedPicker(weights)
    cycle = sum(weights.values())
    for _ in range(3):
        assert Counter(picks(picker, cycle)) == weights


def test_weight_zero_is_never_picked() -> None:
    picker = SmoothWeightedPicker({"a": 2, "drained": 0, "b": 1})
    assert set(picks(picker, 300)) == {"a", "b"}
    assert "drained" not in picker.weights
    with pytest.raises(NoInstancesError):
        SmoothWeightedPicker({"x": 0, "y": 0}).pick()


def test_excluded_keys_are_skipped_and_none_left_is_an_error() -> None:
    picker = SmoothWeightedPicker({"a": 10, "b": 1, "c": 1})
    assert {picker.pick(exclude={"a"}) for _ in range(50)} == {"b", "c"}
    with pytest.raises(NoInstancesError, match="3 excluded"):
        picker.pick(exclude={"a", "b", "c"})


def test_an_update_that_changes_nothing_keeps_the_sequence() -> None:
    picker, twin = SmoothWeightedPicker({"a": 5, "b": 1, "c": 1}), "aabacaa"
    sequence = ""
    for _ in range(7):
        picker.update({"a": 5, "b": 1, "c": 1})
        sequence += picker.pick()
    assert sequence == twin


def test_weights_of_instances_equal_published_and_defaulted() -> None:
    assert set(instance_weights(PODS, None).values()) == {1.0}
    assert set(instance_weights(PODS, {}).values()) == {1.0}
    published = {"10.0.0.1": 30, "10.0.0.2": 10, "10.0.0.3": 0}
    assert list(instance_weights(PODS, published).values()) == [30, 10, 0, 20]


# -- published weights from a loopback API server -----------------------------------------


def slice_list(*annotations: str | None) -> dict[str, Any]:
    items = [
        {"metadata": {"annotations": {"directservice.io/weights": a} if a is not None else {}}}
        for a in annotations
    ]
    return {"kind": "EndpointSliceList", "items": items}


def test_weights_of_all_slices_are_merged_and_bad_entries_dropped() -> None:
    listed = slice_list('{"10.0.0.1":30,"10.0.0.2":0}', None, '{"fd00::3":2.5,"x":-1,"y":true}')
    assert parse_weights(listed) == {"10.0.0.1": 30, "10.0.0.2": 0, "fd00::3": 2.5}
    with pytest.raises(ValueError, match="not a JSON object"):
        parse_weights(slice_list("[1, 2]"))


class FakeApi(http.server.ThreadingHTTPServer):
    """Answers every GET with `status` and `body`; keeps (path, Authorization) of each."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.status = 200
        self.body: bytes = json.dumps(slice_list('{"10.0.0.1":3,"10.0.0.2":1}')).encode()
        self.seen: list[tuple[str, str | None]] = []


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    server: FakeApi

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(self.server.status)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


def serving(server: FakeApi) -> Iterator[FakeApi]:
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    yield from serving(FakeApi())


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_weights_are_read_with_the_token_and_the_service_selector(api: FakeApi) -> None:
    url = f"http://127.0.0.1:{api.server_address[1]}"
    clock = Clock()
    source = EndpointSliceWeights("mnist", "team-a", KubeApi(url, token="t0k"), clock=clock)
    assert source.weights() == {"10.0.0.1": 3, "10.0.0.2": 1}
    assert api.seen == [
        (
            "/apis/discovery.k8s.io/v1/namespaces/team-a/endpointslices"
            "?labelSelector=kubernetes.io%2Fservice-name%3Dmnist",
            "Bearer t0k",
        )
    ]
    clock.now += 9.9
    assert (source.weights(), source.reads) == ({"10.0.0.1": 3, "10.0.0.2": 1}, 1)
    api.status = 403
    clock.now += 0.1
    assert (source.weights(), source.reads, source.failures) == (None, 2, 1)


def test_a_token_file_is_read_again_for_each_request(api: FakeApi, tmp_path: Path) -> None:
    token, clock = tmp_path / "token", Clock()
    url = f"http://127.0.0.1:{api.server_address[1]}"
    source = EndpointSliceWeights("m", "ns", KubeApi(url, token_file=token), clock=clock)
    token.write_text("first\n")
    source.weights()
    token.write_text("rotated\n")
    clock.now += 10
    source.weights()
    assert [auth for _, auth in api.seen] == ["Bearer first", "Bearer rotated"]


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"items": [{"metadata": 7}]}'])
def test_a_malformed_list_means_equal_weights(api: FakeApi, body: bytes) -> None:
    api.body = body
    source = EndpointSliceWeights("m", "ns", KubeApi(f"http://127.0.0.1:{api.server_address[1]}"))
    assert source.weights() is None
    assert source.failures == 1


def test_unreachable_api_or_no_pod_means_equal_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    outside = EndpointSliceWeights("m", "ns")
    assert outside.weights() is None
    assert "KUBERNETES_SERVICE_HOST" in str(outside.last_error)
    api = FakeApi()
    port = api.server_address[1]
    api.server_close()  # nothing listens there now
    closed = EndpointSliceWeights("m", "ns", KubeApi(f"http://127.0.0.1:{port}"), timeout=1)
    assert closed.weights() is None


class Pods:
    def instances(self) -> tuple[Instance, ...]:
        return PODS


def test_the_client_balances_by_published_weights_and_equally_without(api: FakeApi) -> None:
    source = EndpointSliceWeights("m", "ns", KubeApi(f"http://127.0.0.1:{api.server_address[1]}"))
    api.body = json.dumps(slice_list('{"10.0.0.1":3,"10.0.0.2":1,"10.0.0.3":0}')).encode()
    weighted = DirectClient("m", "ns", resolver=Pods(), weights=source)
    assert weighted.instances() == (PODS[0], PODS[1], PODS[3])  # 10.0.0.3 is drained
    api.status = 500
    failing = EndpointSliceWeights("m", "ns", KubeApi(f"http://127.0.0.1:{api.server_address[1]}"))
    assert DirectClient("m", "ns", resolver=Pods(), weights=failing).instances() == PODS
    assert failing.failures == 1


# -- HTTPS with the cluster's CA ----------------------------------------------------------


@pytest.fixture
def tls_api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    cert, key = tmp_path / "ca.crt", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=test-api", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = FakeApi()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    for running in serving(server):
        yield running, cert


def test_https_is_checked_against_the_ca_file_or_not_at_all(tls_api: tuple[FakeApi, Path]) -> None:
    api, ca = tls_api
    url = f"https://127.0.0.1:{api.server_address[1]}"
    trusted = EndpointSliceWeights("m", "ns", KubeApi(url, token="t", ca_file=ca))
    assert trusted.weights() == {"10.0.0.1": 3, "10.0.0.2": 1}
    untrusted = EndpointSliceWeights("m", "ns", KubeApi(url, token="t"))
    assert untrusted.weights() is None
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.last_error)
    insecure = EndpointSliceWeights("m", "ns", KubeApi(url, token="t", insecure=True))
    assert insecure.weights() == {"10.0.0.1": 3, "10.0.0.2": 1}
