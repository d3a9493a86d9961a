"""Parsing the DirectService spec into typed values, with clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from directservice.api.spec import (
    MAX_ENDPOINTS_PER_SLICE,
    PortSpec,
    SpecError,
    Timeouts,
    check_service_name,
    format_duration,
    parse_duration,
)
from directservice.discovery import parse_spec
from directservice.discovery.pai_eas import DEFAULT_EAS_PATH, PaiEasSpec

pytestmark = pytest.mark.unit


def minimal(**fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "provider": {"paiEas": {"endpoint": "http://eas.example", "serviceName": "mnist"}}
    }
    spec.update(fields)
    return spec


def pai(**fields: Any) -> dict[str, Any]:
    spec = minimal()
    spec["provider"]["paiEas"].update(fields)
    return spec


def test_defaults() -> None:
    parsed = parse_spec(minimal())
    assert parsed.provider == PaiEasSpec(
        endpoint="http://eas.example", service_name="mnist", path=DEFAULT_EAS_PATH, internal=None
    )
    assert parsed.poll_interval == 5.0
    assert parsed.port == PortSpec(name="http", app_protocol=None, number=None)
    assert parsed.timeouts == Timeouts(connect=2.0, read=5.0)
    assert parsed.max_endpoints_per_slice == 100
    assert parsed.provider_kind == "paiEas"


def test_everything_set() -> None:
    parsed = parse_spec(
        {
            "provider": {
                "paiEas": {
                    "endpoint": "https://eas.example:8443/",
                    "serviceName": "mnist_saved_model_example",
                    "path": "/api/v1/servicediscovery/upstreams/{serviceName}",
                    "internal": True,
                }
            },
            "pollInterval": "1m30s",
            "port": {"name": "grpc", "appProtocol": "kubernetes.io/h2c", "port": 50000},
            "timeouts": {"connect": "500ms", "read": "10s"},
            "maxEndpointsPerSlice": 1000,
        }
    )
    assert parsed.provider == PaiEasSpec(
        endpoint="https://eas.example:8443",
        service_name="mnist_saved_model_example",
        path="/api/v1/servicediscovery/upstreams/{serviceName}",
        internal=True,
    )
    assert parsed.poll_interval == 90.0
    assert parsed.port == PortSpec("grpc", "kubernetes.io/h2c", 50000)
    assert parsed.timeouts == Timeouts(0.5, 10.0)
    assert parsed.max_endpoints_per_slice == MAX_ENDPOINTS_PER_SLICE


@pytest.mark.parametrize("internal", [False, True])
def test_internal_false_is_kept_distinct_from_unset(internal: bool) -> None:
    assert parse_spec(pai(internal=internal)).provider.internal is internal


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h1m1s", 3661.0),
        (" 5s ", 5.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "f") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5", "s", "5x", "-5s", "5 s", "1m 30s", "5S", "five seconds", "1d", ".5s", "5s!"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.pollInterval"):
        parse_duration(text, "spec.pollInterval")


@pytest.mark.parametrize(
    ("seconds", "text"), [(5.0, "5s"), (90.0, "1m30s"), (60.0, "1m"), (0.25, "250ms"), (1.0, "1s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text, "f") == seconds


def test_poll_interval_bounds() -> None:
    assert parse_spec(minimal(pollInterval="1s")).poll_interval == 1.0
    assert parse_spec(minimal(pollInterval="1h")).poll_interval == 3600.0
    for text in ("999ms", "500ms", "0s", "1h1s"):
        with pytest.raises(SpecError, match="between 1s and 1h"):
            parse_spec(minimal(pollInterval=text))


@pytest.mark.parametrize("field", ["connect", "read"])
def test_bad_timeouts_name_their_field(field: str) -> None:
    with pytest.raises(SpecError, match=rf"spec\.timeouts\.{field}"):
        parse_spec(minimal(timeouts={field: "soon"}))


# --- provider ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider",
    [
        None,
        {},
        "paiEas",
        {"paiEas": {"endpoint": "http://a", "serviceName": "s"}, "modelArts": {}},
    ],
)
def test_exactly_one_provider(provider: Any) -> None:
    with pytest.raises(SpecError, match="exactly one provider"):
        parse_spec({"provider": provider})


def test_unknown_provider() -> None:
    with pytest.raises(SpecError, match="not a known provider"):
        parse_spec({"provider": {"sagemaker": {}}})


def test_provider_body_must_be_an_object() -> None:
    with pytest.raises(SpecError, match="must be an object"):
        parse_spec({"provider": {"paiEas": "http://eas.example"}})


@pytest.mark.parametrize(
    "endpoint", [None, "", "eas.example", "ftp://eas.example", "http://", "http:///path", "//eas"]
)
def test_endpoint_must_be_an_http_url(endpoint: Any) -> None:
    with pytest.raises(SpecError, match="endpoint"):
        parse_spec(pai(endpoint=endpoint))


def test_service_name_is_required() -> None:
    for value in (None, ""):
        with pytest.raises(SpecError, match="serviceName"):
            parse_spec(pai(serviceName=value))


def test_path_must_be_absolute() -> None:
    with pytest.raises(SpecError, match="path"):
        parse_spec(pai(path="upstreams/{serviceName}"))


# --- port --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["http", "grpc-web", "h2c", "a", "a" * 15, "x-1"])
def test_valid_port_names(name: str) -> None:
    assert parse_spec(minimal(port={"name": name})).port.name == name


@pytest.mark.parametrize(
    "name", ["", "HTTP", "-http", "http-", "my--port", "8080", "a" * 16, "a_b", "a.b"]
)
def test_invalid_port_names(name: str) -> None:
    with pytest.raises(SpecError, match=r"spec\.port\.name"):
        parse_spec(minimal(port={"name": name}))


@pytest.mark.parametrize("number", [0, 65536, -1, "80", 80.0])
def test_invalid_port_numbers(number: Any) -> None:
    with pytest.raises(SpecError, match=r"spec\.port\.port"):
        parse_spec(minimal(port={"port": number}))


def test_port_number_bounds() -> None:
    assert parse_spec(minimal(port={"port": 1})).port.number == 1
    assert parse_spec(minimal(port={"port": 65535})).port.number == 65535


# --- maxEndpointsPerSlice ------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 100, MAX_ENDPOINTS_PER_SLICE])
def test_max_endpoints_per_slice_in_range(value: int) -> None:
    assert parse_spec(minimal(maxEndpointsPerSlice=value)).max_endpoints_per_slice == value


@pytest.mark.parametrize("value", [0, -5, MAX_ENDPOINTS_PER_SLICE + 1, "100", 1.5, None])
def test_max_endpoints_per_slice_out_of_range(value: Any) -> None:
    with pytest.raises(SpecError, match="maxEndpointsPerSlice"):
        parse_spec(minimal(maxEndpointsPerSlice=value))


# --- service name ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mnist", "a", "a1", "my-model-2", "a" * 63])
def test_valid_service_names(name: str) -> None:
    check_service_name(name)


@pytest.mark.parametrize(
    "name", ["", "1abc", "-abc", "abc-", "my_svc", "Abc", "a.b", "a" * 64, "mnist_saved_model"]
)
def test_invalid_service_names(name: str) -> None:
    with pytest.raises(SpecError, match="DNS-1035"):
        check_service_name(name)
