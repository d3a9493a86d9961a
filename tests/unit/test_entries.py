"""Per-entry validation of discovery answers and the last-known-good acceptance rule."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from directservice.api.spec import DEFAULT_ALLOWED_CIDRS
from directservice.core.entries import (
    EntryError,
    accept,
    check_allowed,
    coerce_number,
    describe_entry,
    merge_duplicates,
    parse_hostname,
    parse_ip,
    parse_port,
    parse_ready,
    parse_scheme,
    parse_weight,
)
from directservice.core.model import DiscoveryError, DroppedEntry, Instance

pytestmark = pytest.mark.unit


# --- numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(100, 100.0), (0.5, 0.5), ("100", 100.0), ("0.5", 0.5), (" 7 ", 7.0), (0, 0.0)],
)
def test_numbers_are_lenient(raw: Any, expected: float) -> None:
    assert coerce_number(raw, "weight") == expected


@pytest.mark.parametrize("raw", [True, False, None, [1], {"v": 1}, "", "abc", "0x10", "1,5"])
def test_non_numbers_are_rejected(raw: Any) -> None:
    with pytest.raises(EntryError, match="weight"):
        coerce_number(raw, "weight")


@pytest.mark.parametrize("raw", [float("nan"), float("inf"), -float("inf"), "NaN", "inf", "1e999"])
def test_non_finite_numbers_are_rejected(raw: Any) -> None:
    with pytest.raises(EntryError, match="finite"):
        coerce_number(raw, "weight")


def test_an_integer_too_large_for_a_float_is_an_entry_error() -> None:
    # json.loads turns a 400-digit literal into a Python int; it must not crash the poll.
    with pytest.raises(EntryError, match="too large"):
        coerce_number(10**400, "port")


def test_weight_defaults_when_absent_and_rejects_negatives() -> None:
    assert parse_weight(None) == 100.0
    assert parse_weight(None, default=1.0) == 1.0
    assert parse_weight("0") == 0.0
    assert parse_weight(0.25) == 0.25
    with pytest.raises(EntryError, match="negative"):
        parse_weight(-1)
    with pytest.raises(EntryError, match="negative"):
        parse_weight("-0.5")
    with pytest.raises(EntryError):
        parse_weight(True)


@pytest.mark.parametrize(
    ("raw", "expected"), [(1, 1), (65535, 65535), ("50000", 50000), (80.0, 80)]
)
def test_valid_ports(raw: Any, expected: int) -> None:
    port = parse_port(raw)
    assert port == expected
    assert isinstance(port, int)


@pytest.mark.parametrize("raw", [0, -1, 65536, 70000, 80.5, "80.5", "http", None, True])
def test_invalid_ports(raw: Any) -> None:
    with pytest.raises(EntryError, match="port"):
        parse_port(raw)


# --- addresses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10.0.0.1", "10.0.0.1"),
        (" 172.16.0.135 ", "172.16.0.135"),
        ("100.64.0.1", "100.64.0.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:0db8::0001", "2001:db8::1"),
        ("fd00::a", "fd00::a"),
    ],
)
def test_valid_addresses_are_canonical(raw: str, expected: str) -> None:
    assert parse_ip(raw) == expected


@pytest.mark.parametrize("raw", ["010.0.0.1", "10.00.0.1", "10.0.0.01", "00.1.2.3"])
def test_leading_zeros_are_rejected(raw: str) -> None:
    # Some parsers read 010 as octal (8); the meaning is ambiguous, so refuse it.
    with pytest.raises(EntryError, match="leading zeros"):
        parse_ip(raw)


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.1.2.3", "multicast"),
        ("ff02::1", "multicast"),
    ],
)
def test_forbidden_ranges_are_rejected(raw: str, label: str) -> None:
    with pytest.raises(EntryError, match=label):
        parse_ip(raw)


@pytest.mark.parametrize("raw", ["::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:a00:1"])
def test_ipv4_mapped_ipv6_is_rejected(raw: str) -> None:
    with pytest.raises(EntryError, match="IPv4-mapped"):
        parse_ip(raw)


def test_ipv6_zone_index_is_rejected() -> None:
    # The API server rejects "addr%zone" in an EndpointSlice, failing the whole write.
    with pytest.raises(EntryError, match="zone"):
        parse_ip("2001:db8::1%eth0")


@pytest.mark.parametrize(
    "raw",
    [None, "", "   ", 167772161, "10.0.0", "10.0.0.256", "host.example", "10.0.0.1/32", "1::2::3"],
)
def test_non_addresses_are_rejected(raw: Any) -> None:
    with pytest.raises(EntryError, match="not an IP address"):
        parse_ip(raw)


# --- hostname ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, ""])
def test_absent_hostname_is_none(raw: Any) -> None:
    assert parse_hostname(raw) is None


@pytest.mark.parametrize("raw", ["a", "worker-0", "x1", "a" * 63])
def test_valid_hostnames(raw: str) -> None:
    assert parse_hostname(raw) == raw


@pytest.mark.parametrize("raw", ["Worker", "-a", "a-", "a.b", "a_b", "a" * 64, 5, False])
def test_invalid_hostnames(raw: Any) -> None:
    with pytest.raises(EntryError, match="DNS-1123"):
        parse_hostname(raw)


def test_describe_entry_uses_only_address_fields() -> None:
    assert describe_entry({"ip": "10.0.0.1", "port": 80, "token": "secret"}) == "10.0.0.1:80"
    assert describe_entry({"host": "h", "password": "x"}) == "h:?"
    assert describe_entry({}) == "?:?"
    assert len(describe_entry({"ip": "x" * 500, "port": 1})) == 80


# --- merging and acceptance --------------------------------------------------------------


def test_merge_keeps_one_endpoint_per_ip_and_port() -> None:
    merged = merge_duplicates(
        [
            Instance("10.0.0.1", 80, weight=0),
            Instance("10.0.0.1", 80, weight=50),
            Instance("10.0.0.1", 80, weight=20),
            Instance("10.0.0.1", 81, weight=10),
        ]
    )
    assert merged == (Instance("10.0.0.1", 80, weight=50), Instance("10.0.0.1", 81, weight=10))


def test_merge_prefers_serving_over_a_higher_weight_that_is_not_ready() -> None:
    live = Instance("10.0.0.2", 80, weight=1)
    stale = Instance("10.0.0.2", 80, weight=100, ready=False)
    assert merge_duplicates([stale, live]) == (live,)
    assert merge_duplicates([live, stale]) == (live,)


def test_merge_does_not_let_a_zero_weight_copy_take_out_a_live_instance() -> None:
    live = Instance("10.0.0.3", 80, weight=100)
    for order in ([live, Instance("10.0.0.3", 80, weight=0)], [Instance("10.0.0.3", 80, 0), live]):
        assert merge_duplicates(order) == (live,)


def test_merge_output_is_sorted_and_independent_of_input_order() -> None:
    items = [Instance(f"10.0.0.{i}", 80) for i in (9, 3, 7, 1)]
    assert merge_duplicates(items) == merge_duplicates(reversed(items))
    assert [i.ip for i in merge_duplicates(items)] == [
        "10.0.0.1",
        "10.0.0.3",
        "10.0.0.7",
        "10.0.0.9",
    ]


def test_accept_empty_list() -> None:
    with pytest.raises(DiscoveryError) as info:
        accept([], [])
    assert info.value.reason == "EmptyList"


def test_accept_all_weights_zero() -> None:
    with pytest.raises(DiscoveryError) as info:
        accept([Instance("10.0.0.1", 80, weight=0), Instance("10.0.0.2", 80, weight=0)], [])
    assert info.value.reason == "AllWeightsZero"
    assert "2 instances" in info.value.message


def test_accept_no_valid_entries_names_an_example() -> None:
    dropped = [DroppedEntry("127.0.0.1:80", "address 127.0.0.1 is loopback")] * 3
    with pytest.raises(DiscoveryError) as info:
        accept([], dropped)
    assert info.value.reason == "NoValidEntries"
    assert "all 3 entries" in info.value.message
    assert "127.0.0.1:80" in info.value.message


def test_accept_success_keeps_dropped_entries_and_zero_weight_instances() -> None:
    dropped = [DroppedEntry("010.0.0.1:80", "leading zeros")]
    result = accept(
        [
            Instance("10.0.0.2", 80, weight=0),
            Instance("10.0.0.1", 80),
            Instance("10.0.0.1", 80, weight=5),
        ],
        dropped,
    )
    assert result.instances == (Instance("10.0.0.1", 80), Instance("10.0.0.2", 80, weight=0))
    assert result.dropped == tuple(dropped)


# --- allowedCIDRs, readiness and schemes ------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.1.1", "fd00::1",
     "fc00::1"],
)  # fmt: skip
def test_default_allowed_ranges_accept_private_addresses(ip: str) -> None:
    check_allowed(ip, DEFAULT_ALLOWED_CIDRS)


@pytest.mark.parametrize(
    "ip",
    ["8.8.8.8", "172.32.0.1", "192.169.0.1", "100.128.0.1", "100.63.255.255", "2001:db8::1",
     "203.0.113.7", "100.64.0.1", "100.100.2.136", "100.127.255.254"],
)  # fmt: skip
def test_default_allowed_ranges_refuse_public_addresses(ip: str) -> None:
    with pytest.raises(EntryError, match=r"outside spec\.allowedCIDRs"):
        check_allowed(ip, DEFAULT_ALLOWED_CIDRS)


def test_allowed_ranges_are_per_family() -> None:
    everything_v4 = (ipaddress.ip_network("0.0.0.0/0"),)
    check_allowed("8.8.8.8", everything_v4)
    with pytest.raises(EntryError):
        check_allowed("2001:db8::1", everything_v4)


@pytest.mark.parametrize(
    ("raw", "ready"),
    [(None, True), (True, True), (False, False), (1, True), (0, False), ("true", True),
     ("False", False), ("RUNNING", True), ("healthy", True), ("not_ready", False),
     ("Not-Ready", False), ("down", False), (" up ", True)],
)  # fmt: skip
def test_ready_values(raw: Any, ready: bool) -> None:
    assert parse_ready(raw) is ready


@pytest.mark.parametrize("raw", ["maybe", "Normal", 2, 0.5, [], {"ok": True}])
def test_unknown_ready_values_are_errors(raw: Any) -> None:
    with pytest.raises(EntryError, match="ready"):
        parse_ready(raw)


@pytest.mark.parametrize(
    ("raw", "scheme"),
    [(None, None), ("", None), ("http", "http"), ("HTTPS", "https"), (" https ", "https"),
     ("kubernetes.io/h2c", "kubernetes.io/h2c"), ("grpc", "grpc")],
)  # fmt: skip
def test_schemes(raw: Any, scheme: str | None) -> None:
    assert parse_scheme(raw) == scheme


@pytest.mark.parametrize("raw", ["http://", "h 2", 443, "a/b/c", "-x"])
def test_bad_schemes_are_errors(raw: Any) -> None:
    with pytest.raises(EntryError, match="scheme"):
        parse_scheme(raw)
