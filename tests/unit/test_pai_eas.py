"""PAI-EAS upstreams: parsing the discovery answer and building the discovery URL."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.core.model import DiscoveryError, Instance
from directservice.discovery.pai_eas import (
    DEFAULT_EAS_PATH,
    PaiEasSpec,
    discovery_url,
    parse_upstreams,
)

pytestmark = pytest.mark.unit

# The shape the vendor documents for VPC direct connection.
VENDOR_EXAMPLE: dict[str, Any] = {
    "correlative": ["mnist_saved_model_example"],
    "endpoints": {
        "items": [
            {
                "app": "mnist-saved-model-example",
                "ip": "172.16.0.135",
                "port": 50000,
                "weight": 100,
            },
            {
                "app": "mnist-saved-model-example",
                "ip": "172.16.0.136",
                "port": 50000,
                "weight": 100,
            },
        ]
    },
}


def reason_of(payload: Any) -> str:
    with pytest.raises(DiscoveryError) as info:
        parse_upstreams(payload)
    return info.value.reason


def test_vendor_example() -> None:
    result = parse_upstreams(VENDOR_EXAMPLE)
    assert result.instances == (
        Instance("172.16.0.135", 50000, 100.0),
        Instance("172.16.0.136", 50000, 100.0),
    )
    assert result.dropped == ()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"correlative": []},
        {"endpoints": None},
        {"endpoints": {}},
        {"endpoints": {"items": None}},
        {"endpoints": {"items": []}},
    ],
)
def test_missing_or_null_lists_are_empty(payload: Any) -> None:
    assert reason_of(payload) == "EmptyList"


@pytest.mark.parametrize(
    "payload",
    [
        [],
        [{"ip": "10.0.0.1", "port": 80}],
        "text",
        None,
        42,
        {"endpoints": [{"ip": "10.0.0.1", "port": 80}]},
        {"endpoints": "x"},
        {"endpoints": {"items": {"ip": "10.0.0.1", "port": 80}}},
        {"endpoints": {"items": "10.0.0.1:80"}},
    ],
)
def test_wrong_shapes(payload: Any) -> None:
    assert reason_of(payload) == "WrongShape"


def test_numbers_as_strings_and_floats() -> None:
    result = parse_upstreams(
        {
            "endpoints": {
                "items": [
                    {"ip": "10.0.0.1", "port": "8080", "weight": "50"},
                    {"ip": "10.0.0.2", "port": 8080.0, "weight": 0.5},
                    {"ip": "10.0.0.3", "port": 8080},  # weight missing: the EAS default
                ]
            }
        }
    )
    assert result.instances == (
        Instance("10.0.0.1", 8080, 50.0),
        Instance("10.0.0.2", 8080, 0.5),
        Instance("10.0.0.3", 8080, 100.0),
    )
    assert all(isinstance(i.port, int) for i in result.instances)


def test_duplicates_merge_to_the_highest_weight() -> None:
    items = [
        {"ip": "10.0.0.1", "port": 80, "weight": 0},
        {"ip": "10.0.0.1", "port": "80", "weight": 30},
        {"ip": "10.0.0.1", "port": 80, "weight": "10"},
    ]
    result = parse_upstreams({"endpoints": {"items": items}})
    assert result.instances == (Instance("10.0.0.1", 80, 30.0),)


def test_a_bad_entry_is_dropped_and_the_others_kept() -> None:
    items = [
        {"ip": "10.0.0.1", "port": 80},
        {"ip": "127.0.0.1", "port": 80},
        {"ip": "10.0.0.2", "port": 0},
        {"ip": "010.0.0.3", "port": 80},
        {"ip": "10.0.0.4", "port": 80, "weight": -1},
        {"port": 80},
        "not-an-object",
        {"ip": "10.0.0.5", "port": 80, "hostname": "Bad_Name"},
        {"ip": "10.0.0.6", "port": 80, "hostname": "worker-6"},
    ]
    result = parse_upstreams({"endpoints": {"items": items}})
    assert result.instances == (
        Instance("10.0.0.1", 80),
        Instance("10.0.0.6", 80, hostname="worker-6"),
    )
    assert [d.entry for d in result.dropped] == [
        "127.0.0.1:80",
        "10.0.0.2:0",
        "010.0.0.3:80",
        "10.0.0.4:80",
        "?:80",
        "not-an-object",
        "10.0.0.5:80",
    ]
    assert "loopback" in result.dropped[0].reason
    assert "not an object" in result.dropped[5].reason


def test_only_bad_entries_is_no_valid_entries() -> None:
    items = [{"ip": "127.0.0.1", "port": 80}, {"ip": "10.0.0.1", "port": "x"}]
    assert reason_of({"endpoints": {"items": items}}) == "NoValidEntries"


def test_all_weights_zero_is_refused() -> None:
    items = [
        {"ip": "10.0.0.1", "port": 80, "weight": 0},
        {"ip": "10.0.0.2", "port": 80, "weight": "0"},
    ]
    assert reason_of({"endpoints": {"items": items}}) == "AllWeightsZero"


# --- discovery_url -----------------------------------------------------------------------


def spec(**fields: Any) -> PaiEasSpec:
    values: dict[str, Any] = {"endpoint": "http://eas.example", "service_name": "mnist"}
    values.update(fields)
    return PaiEasSpec(**values)


def test_default_path() -> None:
    assert DEFAULT_EAS_PATH.endswith("{serviceName}")
    assert discovery_url(spec()) == (
        "http://eas.example/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/mnist"
    )


def test_custom_path() -> None:
    url = discovery_url(spec(path="/api/v1/servicediscovery/upstreams/{serviceName}"))
    assert url == "http://eas.example/api/v1/servicediscovery/upstreams/mnist"


def test_path_without_placeholder_is_used_as_is() -> None:
    assert discovery_url(spec(path="/fixed")) == "http://eas.example/fixed"


@pytest.mark.parametrize(
    ("name", "escaped"),
    [
        ("mnist_saved_model_example", "mnist_saved_model_example"),
        ("a/b", "a%2Fb"),
        ("a b", "a%20b"),
        ("a?b#c", "a%3Fb%23c"),
        ("a&internal=x", "a%26internal%3Dx"),
        ("..", ".."),
    ],
)
def test_service_names_are_escaped_as_one_segment(name: str, escaped: str) -> None:
    assert discovery_url(spec(service_name=name, path="/up/{serviceName}")) == (
        f"http://eas.example/up/{escaped}"
    )


@pytest.mark.parametrize(
    ("internal", "suffix"), [(True, "?internal=true"), (False, "?internal=false"), (None, "")]
)
def test_internal_flag(internal: bool | None, suffix: str) -> None:
    assert discovery_url(spec(internal=internal, path="/up/{serviceName}")) == (
        "http://eas.example/up/mnist" + suffix
    )


def test_internal_flag_joins_an_existing_query() -> None:
    url = discovery_url(spec(internal=True, path="/up?name={serviceName}"))
    assert url == "http://eas.example/up?name=mnist&internal=true"


@pytest.mark.parametrize("endpoint", ["http://eas.example/", "http://eas.example//"])
def test_trailing_slash_on_endpoint(endpoint: str) -> None:
    assert discovery_url(spec(endpoint=endpoint, path="/up/{serviceName}")) == (
        "http://eas.example/up/mnist"
    )
