"""Properties of the per-entry filters (core/entries.py): for any JSON value they return a
checked value or raise EntryError, whose message is short and shows no nested field;
parse_ip's output is canonical and a fixed point."""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, Network
from directservice.core.entries import (
    METADATA_ADDRESSES,
    EntryError,
    check_allowed,
    parse_hostname,
    parse_ip,
    parse_port,
    parse_ready,
    parse_scheme,
    parse_weight,
)
from properties import BOUNDED, SECRET, json_values

pytestmark = pytest.mark.unit

FILTERS: dict[str, Callable[[Any], Any]] = {
    "ip": parse_ip,
    "port": parse_port,
    "weight": parse_weight,
    "ready": parse_ready,
    "hostname": parse_hostname,
    "scheme": parse_scheme,
}
values = json_values | st.dictionaries(st.just("token"), st.just(SECRET), min_size=1)


def _networks_around(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Any:
    return st.integers(0, address.max_prefixlen).map(
        lambda bits: ipaddress.ip_network(f"{address}/{bits}", strict=False)
    )


networks = st.lists(st.ip_addresses().flatmap(_networks_around), max_size=4)


def outcome(parse: Callable[[Any], Any], value: Any) -> Any:
    """The parsed value, or the EntryError (any other exception fails the test)."""
    try:
        return parse(value)
    except EntryError as exc:
        message = str(exc)
        assert len(message) <= 200, message  # shown in status and Events
        assert SECRET not in message, message
        return exc


@BOUNDED
@given(value=values)
def test_the_filters_only_raise_entry_error(value: Any) -> None:
    for parse in FILTERS.values():
        outcome(parse, value)


@BOUNDED
@given(value=values)
def test_accepted_values_are_in_range(value: Any) -> None:
    port, weight = outcome(parse_port, value), outcome(parse_weight, value)
    if not isinstance(port, EntryError):
        assert type(port) is int and 1 <= port <= 65535
    if not isinstance(weight, EntryError):
        assert isinstance(weight, float) and math.isfinite(weight) and weight >= 0
    ready = outcome(parse_ready, value)
    assert isinstance(ready, bool | EntryError)


@BOUNDED
@given(value=values | st.ip_addresses().map(str))
def test_parse_ip_output_is_canonical_and_a_fixed_point(value: Any) -> None:
    ip = outcome(parse_ip, value)
    if isinstance(ip, EntryError):
        return
    assert ip == str(ipaddress.ip_address(ip))
    assert parse_ip(ip) == ip


@BOUNDED
@given(address=st.ip_addresses(), pad=st.sampled_from(("", " ", "\t", "\n ")))
@example(address=ipaddress.ip_address("fd00::1"), pad=" ")
@example(address=ipaddress.ip_address("100.100.100.200"), pad="")
@example(address=ipaddress.ip_address("::ffff:10.0.0.1"), pad="")
def test_parse_ip_accepts_every_spelling_of_one_address_alike(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, pad: str
) -> None:
    spellings = {str(address), address.exploded, str(address).upper(), address.exploded.upper()}
    results = {
        "refused" if isinstance(ip, EntryError) else ip
        for ip in (outcome(parse_ip, pad + text + pad) for text in spellings)
    }
    refused = (
        address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None)
        or address in METADATA_ADDRESSES
    )
    assert results == {"refused" if refused else str(address)}


@BOUNDED
@given(value=values | st.ip_addresses().map(str), allowed=networks)
def test_check_allowed_only_raises_entry_error(value: Any, allowed: list[Network]) -> None:
    ip = outcome(parse_ip, value)
    if isinstance(ip, EntryError):
        return
    address = ipaddress.ip_address(ip)
    for nets in (allowed, list(DEFAULT_ALLOWED_CIDRS)):
        inside = any(address.version == net.version and address in net for net in nets)
        verdict = outcome(functools.partial(check_allowed, allowed=nets), ip)
        assert (verdict is None) == inside


@BOUNDED
@given(port=st.integers(1, 65535), spelling=st.sampled_from(("{}", " {} ", "{}.0", "{}e0")))
def test_ports_as_numbers_or_strings_parse_alike(port: int, spelling: str) -> None:
    assert parse_port(port) == parse_port(float(port)) == parse_port(spelling.format(port)) == port
