"""Finding instances in ModelArts answers of unpublished shape, and following explicit paths."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.core.model import DiscoveryError, Instance
from directservice.discovery.extract import (
    MISSING,
    find_instance_list,
    get_path,
    locate_list,
    split_address,
)
from directservice.discovery.fields import FieldPaths
from directservice.discovery.modelarts.provider import parse_host_endpoints

pytestmark = pytest.mark.unit

A = {"ip": "192.168.205.58", "port": 31997, "schema": "http"}
B = {"ip": "192.168.205.59", "port": 31998, "schema": "HTTPS"}
EXPECTED = (
    Instance("192.168.205.58", 31997, scheme="http"),
    Instance("192.168.205.59", 31998, scheme="https"),
)

# Shapes a host_endpoints answer might plausibly have. None is documented by Huawei.
PLAUSIBLE: dict[str, Any] = {
    "bare list": [A, B],
    "endpoints": {"endpoints": [A, B]},
    "host_endpoints": {"host_endpoints": [A, B]},
    "instances with a count": {"count": 2, "instances": [A, B]},
    "nested under data": {"data": {"endpoints": [A, B]}},
    "deeply nested": {"result": {"service": {"predict": {"host_endpoints": [A, B]}}}},
    "unknown key": {"hostEndpointList": [A, B], "service_id": "s"},
    "host instead of ip": {"items": [{"host": A["ip"], "port": 31997, "schema": "http"}, B]},
    "ip_address": {"items": [{"ip_address": A["ip"], "port": 31997, "schema": "http"}, B]},
    "scheme key": {"endpoints": [{"ip": A["ip"], "port": 31997, "scheme": "http"}, B]},
    "protocol key": {"endpoints": [{"ip": A["ip"], "port": 31997, "protocol": "http"}, B]},
    "string port": {"endpoints": [{**A, "port": "31997"}, B]},
    "url": {
        "endpoints": [
            {"url": "http://192.168.205.58:31997"},
            {"url": "https://192.168.205.59:31998"},
        ]
    },
    "address with port": {
        "endpoints": [
            {"address": "192.168.205.58:31997", "schema": "http"},
            {"address": "192.168.205.59:31998", "schema": "https"},
        ]
    },
}


@pytest.mark.parametrize("payload", list(PLAUSIBLE.values()), ids=list(PLAUSIBLE))
def test_plausible_shapes_are_found(payload: Any) -> None:
    assert parse_host_endpoints(payload).instances == EXPECTED


def test_preferred_keys_win_over_others() -> None:
    decoy = {"ip": "10.9.9.9", "port": 1}
    payload = {"aaa_history": [decoy], "endpoints": [A]}
    assert find_instance_list(payload) == [A]


def test_shallow_lists_win_over_deep_ones() -> None:
    payload = {"zz": [A], "data": {"endpoints": [B]}}
    assert find_instance_list(payload) == [A]


@pytest.mark.parametrize(
    "payload",
    [{"endpoints": []}, {"host_endpoints": None}, {"data": {"instances": []}}, []],
)
def test_empty_lists_are_empty_not_wrong(payload: Any) -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_host_endpoints(payload)
    assert info.value.reason == "EmptyList"


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"status": "running"},
        {"error_code": "ModelArts.0104", "error_msg": "Parameter error."},
        {"endpoints": [1, 2]},
        {"endpoints": "10.0.0.1:80"},
        [1, 2],
        "text",
        None,
        {"labels": ["a", "b"]},  # a list, but not of instance objects
    ],
)
def test_no_instance_list_is_a_wrong_shape(payload: Any) -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_host_endpoints(payload)
    assert info.value.reason == "WrongShape"
    if isinstance(payload, dict):
        assert "fields.list" in info.value.message  # tells the user what to set


def test_explicit_paths() -> None:
    payload = {
        "result": {
            "nodes": [
                {"net": {"v4": "10.1.0.1"}, "svcPort": "8080", "proto": "https", "up": "yes"},
                {"net": {"v4": "10.1.0.2"}, "svcPort": 8080, "proto": "http", "up": False},
            ],
            "decoy": [{"ip": "10.9.9.9", "port": 1}],
        }
    }
    fields = FieldPaths(
        list="result.nodes", ip="net.v4", port="svcPort", scheme="proto", ready="up"
    )
    assert parse_host_endpoints(payload, fields).instances == (
        Instance("10.1.0.1", 8080, scheme="https"),
        Instance("10.1.0.2", 8080, ready=False, scheme="http"),
    )


def test_an_explicit_list_path_that_is_missing_is_a_wrong_shape() -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_host_endpoints({"data": {}}, FieldPaths(list="data.endpoints"))
    assert (info.value.reason, "data.endpoints" in info.value.message) == ("WrongShape", True)


def test_an_explicit_list_path_that_is_null_is_empty() -> None:
    with pytest.raises(DiscoveryError) as info:
        parse_host_endpoints({"data": {"endpoints": None}}, FieldPaths(list="data.endpoints"))
    assert info.value.reason == "EmptyList"


def test_entries_outside_allowed_ranges_are_dropped_with_a_reason() -> None:
    payload = {
        "endpoints": [A, {"ip": "8.8.8.8", "port": 80}, {"ip": "169.254.169.254", "port": 80}]
    }
    result = parse_host_endpoints(payload)
    assert result.instances == (EXPECTED[0],)
    assert [(d.entry, d.reason) for d in result.dropped] == [
        ("8.8.8.8:80", "address 8.8.8.8 is outside spec.allowedCIDRs"),
        ("169.254.169.254:80", "address 169.254.169.254 is link-local"),
    ]


def test_an_entry_without_an_address_is_dropped() -> None:
    result = parse_host_endpoints({"endpoints": [A, {"port": 80, "name": "x"}]})
    assert result.dropped[0].reason == "entry has no address field"


def test_get_path() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}}
    assert get_path(doc, "a.b.1.c") == 2
    assert get_path(doc, "a.x") is MISSING
    assert get_path(doc, "a.b.7") is MISSING
    assert get_path({"a": None}, "a") is None


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("10.0.0.1", ("10.0.0.1", None, None)),
        ("10.0.0.1:80", ("10.0.0.1", "80", None)),
        ("[fd00::1]:80", ("fd00::1", "80", None)),
        ("fd00::1", ("fd00::1", None, None)),
        ("https://10.0.0.1:8443/x", ("10.0.0.1", "8443", "https")),
        ("http://[fd00::1]:80", ("fd00::1", "80", "http")),
        ("http://10.0.0.1", ("10.0.0.1", None, "http")),
    ],
)
def test_split_address(text: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_address(text) == parts


def test_locate_list_top_level() -> None:
    assert locate_list([A], "") == [A]
    with pytest.raises(DiscoveryError, match="top level"):
        locate_list({"a": 1}, "")
