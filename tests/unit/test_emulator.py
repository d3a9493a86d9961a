"""The discovery emulator over real loopback HTTP: discovery paths, faults, admin API."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests

from directservice.emulator import EmulatorThread
from directservice.emulator.runner import AdminError

pytestmark = pytest.mark.unit

SERVICE = "mnist_saved_model_example"
CONFIG = f"""
services:
  {SERVICE}:
    instances:
      - {{ip: 10.1.0.1, port: 50000, weight: 100}}
      - {{ip: 10.1.0.2, port: 50000}}
  other:
    instances:
      - {{ip: 10.2.0.1, port: 8080, weight: "5"}}
"""
EXPECTED: dict[str, Any] = {
    "correlative": [SERVICE],
    "endpoints": {
        "items": [
            {"app": "mnist-saved-model-example", "ip": "10.1.0.1", "port": 50000, "weight": 100},
            {"app": "mnist-saved-model-example", "ip": "10.1.0.2", "port": 50000, "weight": 100},
        ]
    },
}


@pytest.fixture
def emu(config_emu: EmulatorThread) -> EmulatorThread:
    """A fresh emulator per test, from CONFIG (`http` is conftest's loopback session)."""
    return config_emu


def get(http: requests.Session, emu: EmulatorThread, service: str = SERVICE) -> requests.Response:
    return http.get(emu.upstreams_url(service), timeout=5)


def test_serves_config_on_both_paths(emu: EmulatorThread, http: requests.Session) -> None:
    old = http.get(emu.upstreams_url(SERVICE), params={"internal": "true"}, timeout=5)
    new = http.get(emu.upstreams_url(SERVICE, new_api=True), timeout=5)
    assert old.status_code == new.status_code == 200
    assert old.headers["Content-Type"].startswith("application/json")
    assert old.json() == new.json() == EXPECTED
    assert get(http, emu, "other").json()["endpoints"]["items"][0]["weight"] == "5"
    log = emu.requests()["log"]
    assert [entry["query"] for entry in log] == [{"internal": "true"}, {}, {}]
    assert log[1]["path"] == f"/api/v1/servicediscovery/upstreams/{SERVICE}"


def test_unknown_service_is_404_with_json(emu: EmulatorThread, http: requests.Session) -> None:
    response = get(http, emu, "nope")
    assert response.status_code == 404
    assert response.json()["code"] == 404
    assert http.get(emu.upstreams_url("nope", new_api=True), timeout=5).status_code == 404


def test_admin_replaces_and_deletes_services(emu: EmulatorThread, http: requests.Session) -> None:
    served = emu.set_instances(SERVICE, [{"ip": "10.9.0.1", "port": 1, "weight": 1.5}])
    assert served["instances"] == [
        {"app": "mnist-saved-model-example", "ip": "10.9.0.1", "port": 1, "weight": 1.5}
    ]
    assert get(http, emu).json()["endpoints"]["items"] == served["instances"]

    emu.set_instances("group.svc", [{"ip": "10.3.0.1"}], correlative=["group.a", "group.svc"])
    emu.set_instances("raw", [{"ip": "10.4.0.1"}], fill_defaults=False)
    assert get(http, emu, "group.svc").json()["correlative"] == ["group.a", "group.svc"]
    assert get(http, emu, "raw").json()["endpoints"]["items"] == [{"ip": "10.4.0.1"}]
    assert sorted(emu.services()) == ["group.svc", SERVICE, "other", "raw"]

    assert emu.delete_service(SERVICE)
    assert not emu.delete_service(SERVICE)
    assert get(http, emu).status_code == 404


def test_admin_rejects_bad_input(emu: EmulatorThread, http: requests.Session) -> None:
    with pytest.raises(AdminError, match="400"):
        emu.add_fault("explode")
    with pytest.raises(AdminError, match="unknown keys"):
        emu.add_fault("delay", secs=1)
    bad_json = http.post(emu.url + "/admin/faults", data=b"{", timeout=5)
    assert bad_json.status_code == 400
    assert "not JSON" in bad_json.json()["error"]
    bad_service = http.put(emu.url + "/admin/services/x", json={"instances": 1}, timeout=5)
    assert bad_service.status_code == 400
    assert http.get(emu.url + "/admin/services/missing", timeout=5).status_code == 404
    assert http.delete(emu.url + "/admin/faults/99", timeout=5).status_code == 404
    assert http.get(emu.url + "/healthz", timeout=5).json() == {"status": "ok"}


def test_status_fault_with_body_and_headers(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("status", status=503, headers={"Retry-After": "7"}, count=1)
    emu.add_fault("status", status=429, body="slow down", content_type="text/plain", count=1)
    first, second, third = (get(http, emu) for _ in range(3))
    assert (first.status_code, first.headers["Retry-After"]) == (503, "7")
    assert first.json() == {"code": 503, "message": "injected fault"}
    assert (second.status_code, second.text) == (429, "slow down")
    assert second.headers["Content-Type"].startswith("text/plain")
    assert third.json() == EXPECTED


def test_delay_fault_trips_client_read_timeout(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("delay", seconds=1.0, count=1)
    with pytest.raises(requests.ReadTimeout):
        http.get(emu.upstreams_url(SERVICE), timeout=(5, 0.2))
    assert get(http, emu).json() == EXPECTED  # count used up: no delay any more


def test_delay_fault_then_answers_normally(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("delay", seconds=0.05, count=1)
    before = time.time()
    response = get(http, emu)
    assert response.json() == EXPECTED
    entry = emu.requests()["log"][0]
    assert entry["fault"] == "delay"
    assert entry["time"] >= before + 0.05  # logged when sent, i.e. after the delay


def test_body_shape_faults(emu: EmulatorThread, http: requests.Session) -> None:
    for mode in ("garbage", "empty", "null", "wrong_shape"):
        emu.add_fault(mode, count=1)
    emu.add_fault("wrong_shape", json={"endpoints": "nope"}, count=1)
    garbage, empty, null, shape, custom = (get(http, emu) for _ in range(5))
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        json.loads(garbage.text)
    assert empty.json() == {"correlative": [SERVICE], "endpoints": {"items": []}}
    assert null.json() == {"correlative": [SERVICE], "endpoints": None}
    assert shape.json() == EXPECTED["endpoints"]["items"]
    assert custom.json() == {"endpoints": "nope"}


def test_oversize_fault_is_valid_json_of_the_size(
    emu: EmulatorThread, http: requests.Session
) -> None:
    size = 3 * 1024 * 1024 + 17
    emu.add_fault("oversize", bytes=size, count=1)
    response = get(http, emu)
    assert response.status_code == 200
    assert len(response.content) == int(response.headers["Content-Length"]) == size
    items = response.json()["endpoints"]["items"]
    assert len(items) > 10_000
    assert items[0]["app"] == "mnist-saved-model-example"


def test_redirect_fault(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("redirect", location="http://192.0.2.1/elsewhere", count=1)
    emu.add_fault("redirect", location="/healthz", status=307, count=1)
    first = http.get(emu.upstreams_url(SERVICE), allow_redirects=False, timeout=5)
    assert (first.status_code, first.headers["Location"]) == (302, "http://192.0.2.1/elsewhere")
    second = http.get(emu.upstreams_url(SERVICE), allow_redirects=False, timeout=5)
    assert (second.status_code, second.headers["Location"]) == (307, "/healthz")


def test_close_fault_drops_the_connection(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("close", count=1)
    with pytest.raises(requests.ConnectionError):
        get(http, emu)
    assert get(http, emu).json() == EXPECTED
    log = emu.requests()["log"]
    assert [(e["status"], e["fault"]) for e in log] == [(None, "close"), (200, None)]


def test_fault_scope_count_and_clearing(emu: EmulatorThread, http: requests.Session) -> None:
    emu.add_fault("status", status=500, service="other", count=2)
    assert get(http, emu).status_code == 200  # other services unaffected
    assert [get(http, emu, "other").status_code for _ in range(3)] == [500, 500, 200]
    assert emu.faults() == []

    forever = emu.add_fault("status", status=502)
    assert forever["count"] is None
    assert [get(http, emu, s).status_code for s in (SERVICE, "other", "nope")] == [502] * 3
    assert emu.clear_faults() == 1
    assert get(http, emu).status_code == 200


def test_request_log_and_counters(emu: EmulatorThread, http: requests.Session) -> None:
    before = time.time()
    http.get(emu.upstreams_url(SERVICE), headers={"User-Agent": "probe/1"}, timeout=5)
    get(http, emu, "other")
    get(http, emu, "nope")
    http.get(emu.url + "/admin/services", timeout=5)  # admin calls are not counted
    seen = emu.requests()
    assert seen["total"] == 3
    assert seen["per_service"] == {SERVICE: 1, "other": 1, "nope": 1}
    assert seen["per_status"] == {"200": 2, "404": 1}
    first = seen["log"][0]
    assert first["flavour"] == "eas"
    assert first["method"] == "GET"
    assert first["headers"]["User-Agent"] == "probe/1"
    assert before <= first["time"] <= time.time()
    assert [e["service"] for e in emu.requests("other")["log"]] == ["other"]

    emu.reset_requests()
    assert emu.requests() == {
        "total": 0,
        "per_service": {},
        "per_status": {},
        "per_credential": {},
        "dropped": 0,
        "log": [],
    }


def test_thread_stops_cleanly_and_reports_start_failure() -> None:
    before = set(threading.enumerate())
    with EmulatorThread({"s": [{"ip": "10.0.0.1"}]}) as first:
        port = first.port
        with pytest.raises(RuntimeError, match="failed to start"):
            EmulatorThread(port=port).start()
        first.stop()  # stop is idempotent: __exit__ calls it again
    assert set(threading.enumerate()) == before
