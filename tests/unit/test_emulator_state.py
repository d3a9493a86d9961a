"""The emulator's pure model: config parsing, fault validation and queueing, request log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from directservice.emulator.faults import Fault, FaultError, FaultMode, parse_fault
from directservice.emulator.state import (
    ConfigError,
    EmulatorState,
    RequestRecord,
    Service,
    load_config,
    parse_config,
)

pytestmark = pytest.mark.unit


def _record(service: str, status: int | None = 200) -> RequestRecord:
    return RequestRecord("eas", service, "GET", f"/x/{service}", {}, 1.0, status)


def test_config_fills_app_and_weight_but_keeps_odd_values() -> None:
    services = parse_config(
        {
            "services": {
                "mnist_saved_model_example": {
                    "instances": [
                        {"ip": "10.1.0.1", "port": 50000, "weight": 100},
                        {"ip": "10.1.0.2", "port": 50000},
                        {"ip": "10.1.0.3", "port": "50000", "weight": "7", "zone": "a"},
                        {"ip": "10.1.0.4", "port": 1, "weight": 0.5, "app": "custom"},
                        "10.1.0.5:80",
                    ]
                }
            }
        }
    )
    svc = services["mnist_saved_model_example"]
    assert svc.instances == (
        {"app": "mnist-saved-model-example", "ip": "10.1.0.1", "port": 50000, "weight": 100},
        {"app": "mnist-saved-model-example", "ip": "10.1.0.2", "port": 50000, "weight": 100},
        {
            "app": "mnist-saved-model-example",
            "ip": "10.1.0.3",
            "port": "50000",
            "weight": "7",
            "zone": "a",
        },
        {"app": "custom", "ip": "10.1.0.4", "port": 1, "weight": 0.5},
        "10.1.0.5:80",
    )
    assert svc.correlative_or_self() == ["mnist_saved_model_example"]


def test_config_without_defaults_and_with_correlative() -> None:
    spec = {"instances": [{"ip": "10.0.0.1"}], "fill_defaults": False, "correlative": ["g.a"]}
    svc = parse_config({"services": {"g.a": spec}})["g.a"]
    assert svc.instances == ({"ip": "10.0.0.1"},)
    assert svc.to_json() == {"instances": [{"ip": "10.0.0.1"}], "correlative": ["g.a"]}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "object"),
        ({"service": {}}, "unknown top-level"),
        ({"services": []}, "map service names"),
        ({"services": {"a": {"instances": {}}}}, "must be a list"),
        ({"services": {"a": {"instance": []}}}, "unknown keys"),
        ({"services": {"a": {"correlative": "b"}}}, "list of strings"),
        ({"services": {"a": {"fill_defaults": "no"}}}, "boolean"),
        ({"services": {"a": {"instances": [{1, 2}]}}}, "not JSON"),
    ],
)
def test_config_errors(document: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(document)


def test_load_config_reads_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("services:\n  s:\n    instances:\n      - {ip: 10.1.0.1, port: 80}\n")
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"services": {"s": {"instances": [{"ip": "10.1.0.1"}]}}}))
    assert load_config(yaml_file)["s"].instances[0]["port"] == 80
    assert load_config(json_file)["s"].instances[0]["weight"] == 100
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == {}
    dated = tmp_path / "dated.yaml"
    dated.write_text("services:\n  s:\n    instances: [{ip: 10.1.0.1, at: 2024-01-01}]\n")
    with pytest.raises(ConfigError, match="not JSON"):
        load_config(dated)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"mode": "status", "status": 503, "headers": {"Retry-After": 3}},
            Fault(FaultMode.STATUS, status=503, headers={"Retry-After": "3"}),
        ),
        (
            {"mode": "delay", "seconds": 1, "service": "s", "count": 2},
            Fault(FaultMode.DELAY, service="s", count=2, seconds=1.0),
        ),
        (
            {"mode": "redirect", "location": "http://x/"},
            Fault(FaultMode.REDIRECT, status=302, location="http://x/"),
        ),
        ({"mode": "oversize", "bytes": 10}, Fault(FaultMode.OVERSIZE, size=10)),
        ({"mode": "wrong_shape", "json": [1]}, Fault(FaultMode.WRONG_SHAPE, document=[1])),
        ({"mode": "close", "count": None}, Fault(FaultMode.CLOSE)),
    ],
)
def test_parse_fault(body: dict[str, Any], expected: Fault) -> None:
    assert parse_fault(body) == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"mode": "explode"}, "mode must be one of"),
        ({"mode": "status"}, "status between"),
        ({"mode": "status", "status": True}, "status between"),
        ({"mode": "status", "status": 503, "seconds": 1}, "unknown keys"),
        ({"mode": "delay"}, "seconds"),
        ({"mode": "delay", "seconds": -1}, "seconds"),
        ({"mode": "redirect", "location": "/x", "status": 200}, "redirect status"),
        ({"mode": "redirect"}, "location"),
        ({"mode": "oversize", "bytes": 0}, "bytes"),
        ({"mode": "empty", "count": 0}, "count"),
        ({"mode": "empty", "count": True}, "count"),
        ({"mode": "empty", "service": ""}, "service"),
        ({"mode": "garbage", "body": 1}, "body must be a string"),
        ({"mode": "status", "status": 500, "headers": ["x"]}, "headers"),
    ],
)
def test_parse_fault_rejects(body: Any, message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse_fault(body)


def test_faults_are_a_fifo_queue_with_counts() -> None:
    state = EmulatorState()
    first = state.add_fault(Fault(FaultMode.STATUS, status=503, count=2))
    state.add_fault(Fault(FaultMode.GARBAGE, count=1))
    forever = state.add_fault(Fault(FaultMode.EMPTY, service="only"))
    assert [f.id for f in state.faults()] == [first.id, first.id + 1, first.id + 2]

    taken = [state.take_fault("s") for _ in range(4)]
    modes = [f.mode if f else None for f in taken]
    assert modes == [FaultMode.STATUS, FaultMode.STATUS, FaultMode.GARBAGE, None]
    assert state.faults() == [forever]
    for _ in range(3):
        assert state.take_fault("only") == forever

    assert state.delete_fault(forever.id)
    assert not state.delete_fault(forever.id)
    state.add_fault(Fault(FaultMode.NULL))
    assert state.clear_faults() == 1
    assert state.take_fault("s") is None


def test_services_put_and_delete() -> None:
    state = EmulatorState([Service("a", ({"ip": "10.0.0.1"},))])
    state.put_service(Service("b"))
    assert sorted(state.services()) == ["a", "b"]
    assert state.delete_service("a")
    assert not state.delete_service("a")
    assert state.service("a") is None


def test_request_log_is_bounded_but_counters_are_not() -> None:
    state = EmulatorState(log_size=3)
    for service in ["a", "a", "b", "a", "b"]:
        state.record(_record(service))
    state.record(_record("c", status=None))
    assert [r.service for r in state.request_log()] == ["a", "b", "c"]
    assert [r.service for r in state.request_log("b")] == ["b"]
    assert state.counters() == {
        "total": 6,
        "per_service": {"a": 3, "b": 2, "c": 1},
        "per_status": {"200": 5, "closed": 1},
        "per_credential": {},  # no flavour named a credential
        "dropped": 3,
    }
    assert state.request_log()[-1].to_json()["status"] is None
    state.reset_requests()
    assert state.counters()["total"] == 0
    assert state.request_log() == []
