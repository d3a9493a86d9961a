"""AK/SK request signing (SDK-HMAC-SHA256), checked against values computed independently."""

from __future__ import annotations

import datetime
import hashlib
import hmac

import pytest

from directservice.discovery.modelarts import sigv

pytestmark = pytest.mark.unit

EMPTY_BODY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
WHEN = datetime.datetime(2019, 11, 15, 3, 36, 55, tzinfo=datetime.UTC)


def test_the_vendor_example_canonical_request() -> None:
    # Huawei's API signing guide works through GET .../vpcs?limit=2&marker=... with these
    # three headers, and publishes the SHA-256 of the resulting canonical request. Matching
    # that digest checks URI, query, header and separator rules against the vendor itself.
    url = (
        "https://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs"
        "?marker=13551d6b-755d-4757-b956-536f674975c0&limit=2"
    )
    headers = {
        "Content-Type": "application/json",
        "Host": "service.region.example.com",
        "X-Sdk-Date": "20191115T033655Z",
    }
    canonical, signed = sigv.canonical_request("GET", url, headers)
    assert signed == "content-type;host;x-sdk-date"
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )
    assert sigv.string_to_sign(canonical, "20191115T033655Z") == (
        "SDK-HMAC-SHA256\n20191115T033655Z\n"
        "b25362e603ee30f4f25e7858e8a7160fd36e803bb2dfe206278659d71a9bcd7a"
    )


def test_a_modelarts_call_signed_by_hand() -> None:
    # The canonical request written out by hand, then HMAC-SHA256 with the secret key: the
    # signature sign() produces must be exactly this.
    url = "https://modelarts.example.com:8443/v1/p1/services/s-1/predict/endpoints?type=host_endpoints"
    canonical = (
        "GET\n"
        "/v1/p1/services/s-1/predict/endpoints/\n"  # the canonical URI always ends in '/'
        "type=host_endpoints\n"
        "host:modelarts.example.com:8443\n"
        "x-project-id:p1\n"
        "x-sdk-date:20191115T033655Z\n"
        "\n"
        "host;x-project-id;x-sdk-date\n" + EMPTY_BODY_SHA256
    )
    to_sign = "SDK-HMAC-SHA256\n20191115T033655Z\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(b"my-secret-key", to_sign.encode(), hashlib.sha256).hexdigest()

    headers = sigv.sign(
        "MYACCESSKEY", "my-secret-key", "GET", url, {"X-Project-Id": "p1"}, now=WHEN
    )
    assert headers["Host"] == "modelarts.example.com:8443"
    assert headers["X-Sdk-Date"] == "20191115T033655Z"
    assert headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=MYACCESSKEY, SignedHeaders=host;x-project-id;x-sdk-date, "
        f"Signature={expected}"
    )
    assert "my-secret-key" not in "".join(headers.values())


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("", "/"),
        ("/", "/"),
        ("/v1/a", "/v1/a/"),
        ("/v1/a/", "/v1/a/"),
        ("/v1/a%20b/c", "/v1/a%20b/c/"),  # escapes are decoded, then encoded once
        ("/v1/a~b_c-d.e", "/v1/a~b_c-d.e/"),  # unreserved characters stay
        ("/v1/a:b", "/v1/a%3Ab/"),
    ],
)
def test_canonical_uri(path: str, uri: str) -> None:
    assert sigv.canonical_uri(path) == uri


def test_query_is_sorted_and_encoded() -> None:
    url = "https://h.example/x?b=2&a=1&a=0&c=x%20y"
    canonical, _ = sigv.canonical_request("GET", url, {"Host": "h.example"})
    assert canonical.split("\n")[2] == "a=0&a=1&b=2&c=x%20y"


def test_default_ports_are_left_out_of_host() -> None:
    assert sigv.sign("A", "S", "GET", "https://h.example:443/x", now=WHEN)["Host"] == "h.example"
    assert sigv.sign("A", "S", "GET", "http://h.example:80/x", now=WHEN)["Host"] == "h.example"


def test_the_date_is_utc() -> None:
    local = WHEN.astimezone(datetime.timezone(datetime.timedelta(hours=8)))
    assert sigv.sign("A", "S", "GET", "https://h.example/", now=local)["X-Sdk-Date"] == (
        "20191115T033655Z"
    )
