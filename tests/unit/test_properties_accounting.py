"""Properties: every entry of an answer is accounted for, through each provider's discover().

An answer mixes valid entries (a small address pool makes duplicates common) with entries
that each carry one defect. Then every valid ip:port is published exactly once, with the
weight and readiness of its best copy; every invalid entry is reported as a DroppedEntry;
entries in == published + dropped + merged duplicates. No label or reason repeats a field
the parser does not show (SECRET sits in such fields, or nested in the shown ones).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.api.spec import SpecError
from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery.base import Provider
from fuzz.harness import discover, provider
from fuzz.targets import MODEL_ARTS, PAI_EAS
from properties import BOUNDED, SECRET, encode, invalid_entries, valid_entries

pytestmark = pytest.mark.unit

READY_WORDS = {True: True, False: False, "healthy": True, "down": False}  # 1 and 0 are True, False
REFUSALS = {"EmptyList", "NoValidEntries", "AllWeightsZero", "WrongShape"}

HTTP_JSON_READY = provider(
    {
        "provider": {
            "httpJson": {
                "url": "http://127.0.0.1:8080/hosts",
                "listPath": "data.hosts",
                "fields": {"ip": "ip", "port": "port", "weight": "weight", "ready": "ready"},
            }
        }
    }
)
Wrap = Callable[[list[Any]], Any]
CASES: dict[str, tuple[Provider, Wrap, bool]] = {  # provider, answer envelope, reads ready
    "paiEas": (PAI_EAS, lambda items: {"endpoints": {"items": items}}, False),
    "httpJson": (HTTP_JSON_READY, lambda items: {"data": {"hosts": items}}, True),
    "modelArts": (MODEL_ARTS[0], lambda items: {"result": {"host_endpoints": items}}, False),
}


def serving(entry: dict[str, Any], reads_ready: bool) -> tuple[bool, float]:
    weight = float(entry.get("weight", 100))
    ready = READY_WORDS[entry["ready"]] if reads_ready and "ready" in entry else True
    return ready and weight > 0, weight


def check_accounting(
    items: list[Any], valid: list[dict[str, Any]], outcome: Discovery | DiscoveryError, ready: bool
) -> None:
    best: dict[tuple[str, int], tuple[bool, float]] = {}
    for entry in valid:
        key = (str(ipaddress.ip_address(entry["ip"])), int(entry["port"]))
        best[key] = max(best.get(key, (False, -1.0)), serving(entry, ready))
    if isinstance(outcome, DiscoveryError):
        assert not any(s for s, _ in best.values()), f"refused with a serving entry: {outcome}"
        assert outcome.reason in REFUSALS
        assert SECRET not in outcome.message
        return
    published = {(i.ip, i.port): (i.serving, i.weight) for i in outcome.instances}
    assert published == best  # each valid ip:port once, as its best copy
    merged = len(valid) - len(best)
    assert len(items) == len(outcome.instances) + len(outcome.dropped) + merged
    for dropped in outcome.dropped:
        assert SECRET not in dropped.entry and SECRET not in dropped.reason, dropped
        assert len(dropped.entry) <= 80 and len(dropped.reason) <= 200, dropped


def outcome_of(target: Provider, answer: Any) -> Discovery | DiscoveryError:
    try:
        return discover(target, encode(answer))
    except DiscoveryError as exc:
        return exc


def mixed(objects_only: bool, with_ready: bool) -> st.SearchStrategy[tuple[list[Any], list[Any]]]:
    """(entries in answer order, the valid ones among them)."""
    return st.tuples(
        st.lists(valid_entries(with_ready=with_ready), max_size=8),
        st.lists(invalid_entries(objects_only=objects_only), max_size=6),
    ).flatmap(
        lambda parts: st.permutations(parts[0] + parts[1]).map(lambda order: (order, parts[0]))
    )


@pytest.mark.parametrize("name", CASES)
@BOUNDED
@given(data=st.data())
def test_every_entry_is_published_dropped_or_merged(name: str, data: st.DataObject) -> None:
    target, wrap, reads_ready = CASES[name]
    items, valid = data.draw(mixed(objects_only=False, with_ready=reads_ready))
    check_accounting(items, valid, outcome_of(target, wrap(items)), reads_ready)


static_valid = st.builds(
    lambda ip, port, weight, ready: {
        "ip": ip,
        "port": port,
        **({} if weight is None else {"weight": weight}),
        **({} if ready is None else {"ready": ready}),
    },
    valid_entries().map(lambda e: e["ip"]),
    st.integers(1, 65535),
    st.none() | st.integers(0, 100) | st.floats(0, 100),
    st.none() | st.booleans(),
)
static_invalid = st.one_of(
    static_valid.map(lambda e: {**e, "ip": "8.8.8.8"}),
    static_valid.map(lambda e: {**e, "ip": "127.0.0.1"}),
    static_valid.map(lambda e: {**e, "ip": "10.0.0.01"}),
    static_valid.map(lambda e: {**e, "weight": -1}),
    static_valid.map(lambda e: {**e, "hostname": "Not_A_Label"}),
)


@BOUNDED
@given(
    parts=st.tuples(st.lists(static_valid, max_size=8), st.lists(static_invalid, max_size=4))
    .filter(lambda p: p[0] or p[1])
    .flatmap(lambda p: st.permutations(p[0] + p[1]).map(lambda order: (order, p[0])))
)
def test_static_instances_are_published_dropped_or_merged(
    parts: tuple[list[Any], list[Any]],
) -> None:
    items, valid = parts
    try:
        target = provider({"provider": {"static": {"instances": items}}})
        outcome: Discovery | DiscoveryError = discover(target, b"")
    except DiscoveryError as exc:
        outcome = exc
    check_accounting(items, valid, outcome, ready=True)


def test_spec_weights_beyond_float_range_are_refused_by_the_spec_parser() -> None:
    """Regression: a static weight of 10**400 (valid JSON, and YAML) made parse_static raise
    OverflowError instead of SpecError."""
    spec = {"instances": [{"ip": "10.0.0.1", "port": 80, "weight": 10**400}]}
    with pytest.raises(SpecError, match="weight"):
        provider({"provider": {"static": spec}})
