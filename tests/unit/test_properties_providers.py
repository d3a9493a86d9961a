"""Properties: whatever a discovery server answers, a poll ends in a Discovery or a
DiscoveryError (the Provider contract, discovery/base.py), never another exception; and
what is accepted is publishable (fuzz.harness.check_discovery).

Each provider is driven through its real discover() with the answer as raw bytes, so JSON
decoding is covered too; extract.py is also driven directly with arbitrary paths.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.api.spec import DEFAULT_ALLOWED_CIDRS
from directservice.core.model import DiscoveryError
from directservice.discovery.base import Provider
from directservice.discovery.extract import find_instance_list, locate_list, parse_entries
from directservice.discovery.fields import FieldPaths
from fuzz.harness import check_discovery, discover
from fuzz.targets import HTTP_JSON, MODEL_ARTS, PAI_EAS
from properties import BOUNDED, encode, json_keys, json_values, texts

pytestmark = pytest.mark.unit

PROVIDERS: dict[str, Provider] = {
    "paiEas": PAI_EAS,
    "httpJson bare list": HTTP_JSON[0],
    "httpJson by paths": HTTP_JSON[1],
    "modelArts guessing": MODEL_ARTS[0],
    "modelArts by paths": MODEL_ARTS[1],
}
# Answers shaped like the real ones, with anything inside: deeper paths get exercised.
ENVELOPES = (
    lambda items: {"endpoints": {"items": items}},
    lambda items: {"data": {"hosts": items}},
    lambda items: {"result": {"hosts": items}},
    lambda items: {"host_endpoints": items},
    lambda items: items,
)
answers = json_values | st.builds(
    lambda wrap, items: wrap(items), st.sampled_from(ENVELOPES), st.lists(json_values, max_size=6)
)
dot_paths = st.lists(json_keys.filter(lambda k: k and "." not in k and " " not in k), max_size=3)


def poll(provider: Provider, body: bytes) -> None:
    """One poll: DiscoveryError is a documented outcome, an accepted answer is checked."""
    try:
        result = discover(provider, body)
    except DiscoveryError:
        return
    check_discovery(result, DEFAULT_ALLOWED_CIDRS)


@BOUNDED
@given(answer=answers)
def test_any_json_answer_is_accepted_or_refused(answer: Any) -> None:
    body = encode(answer)
    for provider in PROVIDERS.values():  # one answer for all: generating it costs the most
        poll(provider, body)


@BOUNDED
@given(body=st.binary(max_size=200) | texts(60).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_any_bytes_are_accepted_or_refused(body: bytes) -> None:
    for provider in PROVIDERS.values():
        poll(provider, body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="nested-deeper-than-the-decoder-allows"),
        pytest.param(
            b'{"endpoints": {"items": [{"port": ' + b"9" * 5000 + b"}]}}", id="5000-digits"
        ),
    ],
)
@pytest.mark.parametrize("name", PROVIDERS)
def test_bodies_json_cannot_decode_are_invalid_json(name: str, body: bytes) -> None:
    """Regression: json.loads raises RecursionError (deep nesting) and a plain ValueError
    (integers over 4300 digits), neither a JSONDecodeError; both escaped decode_json."""
    with pytest.raises(DiscoveryError) as info:
        discover(PROVIDERS[name], body)
    assert info.value.reason == "InvalidJSON"


@BOUNDED
@given(
    payload=answers,
    list_path=st.none() | st.just("") | dot_paths.filter(bool).map(".".join),
    paths=st.lists(st.none() | dot_paths.filter(bool).map(".".join), min_size=7, max_size=7),
    guess=st.booleans(),
)
def test_extraction_with_any_paths(
    payload: Any, list_path: str | None, paths: list[str | None], guess: bool
) -> None:
    fields = FieldPaths(*paths)
    found = find_instance_list(payload, fields.ip)  # never raises: None or a list
    assert found is None or isinstance(found, list)
    try:
        items = locate_list(payload, list_path, fields.ip)
        result = parse_entries(items, fields, DEFAULT_ALLOWED_CIDRS, guess=guess)
    except DiscoveryError:
        return
    check_discovery(result, DEFAULT_ALLOWED_CIDRS)
    assert len(result.instances) + len(result.dropped) <= len(items)
