"""A stored spec of any shape gives SpecError naming the field: never another exception.

Objects stored under an older or looser CRD may hold any JSON type anywhere. Every field of a
valid spec of each provider is replaced, one at a time, by a value of every other JSON type;
parsing must either accept it or raise SpecError whose message names the field's path.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from directservice.api.spec import SpecError
from directservice.discovery import parse_spec

WRONG: tuple[Any, ...] = ("text", 7, -1, 2.5, True, None, [], ["x"], {}, {"x": 1})

VALID: dict[str, dict[str, Any]] = {
    "paiEas": {
        "provider": {
            "paiEas": {"endpoint": "http://eas.example", "serviceName": "m", "internal": True}
        },
        "pollInterval": "5s",
        "port": {"name": "http", "port": 8080, "appProtocol": "http"},
        "timeouts": {"connect": "1s", "read": "2s"},
        "maxEndpointsPerSlice": 100,
        "allowedCIDRs": ["10.0.0.0/8"],
        "maxShrinkPercent": 50,
        "shrinkConfirmations": 3,
        "rateBudget": {"callsPerMinute": 60},
    },
    "modelArts": {
        "provider": {
            "modelArts": {
                "endpoint": "https://ma.example",
                "projectId": "p1",
                "serviceId": "s1",
                "iamEndpoint": "https://iam.example",
                "credentialsSecretRef": {"name": "creds"},
                "fields": {"list": "data.items", "ip": "ip", "port": "port"},
            }
        }
    },
    "httpJson": {
        "provider": {
            "httpJson": {
                "url": "http://registry.example/hosts",
                "listPath": "data",
                "headers": [
                    {"name": "X-A", "value": "v"},
                    {"name": "X-B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ],
                "fields": {"ip": "ip", "port": "port"},
                "successStatuses": [200],
            }
        }
    },
    "static": {
        "provider": {
            "static": {
                "instances": [
                    {"ip": "10.0.0.1", "port": 80, "weight": 1, "ready": True, "hostname": "a"}
                ]
            }
        }
    },
}


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside `node` (keys and list indexes), the node itself first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


def replaced(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    node = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def names_field(message: str, path: tuple[Any, ...]) -> bool:
    """The message names the field, or one of its parents (an object or list it lies in)."""
    keys = [str(step) for step in path if isinstance(step, str)]
    return message.startswith("spec") and (not keys or any(k in message for k in keys))


CASES = [
    (kind, path, value) for kind, spec in VALID.items() for path in paths(spec) for value in WRONG
]


@pytest.mark.parametrize("kind", sorted(VALID))
def test_the_valid_specs_parse(kind: str) -> None:
    assert parse_spec(VALID[kind]).provider_kind == kind


@pytest.mark.parametrize(("kind", "path", "value"), CASES, ids=lambda v: repr(v)[:30])
def test_a_wrong_type_anywhere_is_a_spec_error_naming_the_field(
    kind: str, path: tuple[Any, ...], value: Any
) -> None:
    spec = replaced(VALID[kind], path, value)
    try:
        parse_spec(spec)
    except SpecError as exc:
        assert names_field(str(exc), path), f"{exc} does not name {path}"


@pytest.mark.parametrize("url", ["http://a:99999/x", "http://[::1/x", "http://a:b/x"])
@pytest.mark.parametrize(
    ("kind", "key"), [("paiEas", "endpoint"), ("httpJson", "url"), ("modelArts", "endpoint")]
)
def test_a_url_the_http_client_cannot_use_is_a_spec_error(kind: str, key: str, url: str) -> None:
    spec = replaced(VALID[kind], ("provider", kind, key), url)
    with pytest.raises(SpecError, match=rf"spec\.provider\.{kind}\.{key}"):
        parse_spec(spec)
