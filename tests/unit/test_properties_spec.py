"""Properties of the spec parser (discovery.parse_spec): any JSON-like spec either parses or
raises SpecError naming a field; a parsed spec always yields a provider, and its durations
are those the CRD allows (a spec may come from an older CRD or a file, so the parser is the
last check)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from directservice.api.spec import DirectServiceSpec, SpecError
from directservice.discovery import parse_spec, provider_for
from properties import BOUNDED, json_values, texts

pytestmark = pytest.mark.unit

BASE = "http://127.0.0.1:8080"
PROVIDERS: dict[str, dict[str, Any]] = {
    "paiEas": {
        "endpoint": BASE,
        "serviceName": "svc",
        "path": "/x/{serviceName}",
        "internal": True,
    },
    "httpJson": {
        "url": f"{BASE}/hosts?a=1",
        "listPath": "data.hosts",
        "headers": [
            {"name": "X-A", "value": "1"},
            {"name": "X-B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        "fields": {"ip": "addr.v4", "port": "p", "weight": ""},
        "successStatuses": [200, 204],
    },
    "modelArts": {
        "endpoint": BASE,
        "projectId": "p1",
        "serviceId": "s1",
        "credentialsSecretRef": {"name": "creds", "tokenKey": "token"},
        "iamEndpoint": None,
        "authMethod": "Token",
        "fields": {"list": "data.endpoints", "ip": "host"},
    },
    "static": {"instances": [{"ip": "10.0.0.1", "port": 80, "weight": 5, "ready": True}]},
}
TOP_LEVEL: dict[str, Any] = {
    "pollInterval": "1m30s",
    "timeouts": {"connect": "500ms", "read": "5s"},
    "port": {"name": "http", "appProtocol": "http", "port": 8080},
    "maxEndpointsPerSlice": 100,
    "allowedCIDRs": ["10.0.0.0/8", "fd00::/8"],
    "maxShrinkPercent": 50,
    "shrinkConfirmations": 3,
    "rateBudget": {"callsPerMinute": 20},
    "healthCheck": {"type": "http", "path": "/healthz", "interval": "5s", "timeout": "1s"},
    "drainSeconds": 10,
    "exclude": ["10.0.0.7", "10.0.0.8:8080", "[fd00::7]:80"],
    "maxStaleness": "10m",
}
odd_values = (
    json_values
    | texts().map(lambda t: t + "s")
    | st.sampled_from(
        ("0s", "1h1s", "99999h", "9" * 400 + "s", "0.5s", "59m60s", "10.0.0.0/33", "::/0", "")
    )
)


def mutated(section: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`section` with some keys dropped, some values replaced by anything."""
    keys = sorted(section)
    return st.tuples(
        st.sets(st.sampled_from(keys)), st.dictionaries(st.sampled_from(keys), odd_values)
    ).map(lambda change: {k: v for k, v in section.items() if k not in change[0]} | change[1])


specs = st.builds(
    lambda kind, body, top: {"provider": {kind: body}, **top},
    st.sampled_from(sorted(PROVIDERS)),
    st.sampled_from(sorted(PROVIDERS)).flatmap(lambda kind: mutated(PROVIDERS[kind])),
    mutated(TOP_LEVEL),
) | st.builds(
    lambda kind, top: {"provider": {kind: PROVIDERS[kind]}, **top},
    st.sampled_from(sorted(PROVIDERS)),
    mutated(TOP_LEVEL),
)


def parsed(raw: Any) -> DirectServiceSpec | None:
    try:
        return parse_spec(raw)
    except SpecError as exc:
        assert str(exc).startswith("spec"), exc  # the message names the field
        return None


@BOUNDED
@given(raw=json_values | specs)
def test_any_spec_parses_or_raises_spec_error(raw: Any) -> None:
    spec = parsed(raw)
    if spec is None:
        return
    provider_for(spec).close()  # a spec the parser accepted always yields a provider
    for url in spec.provider.discovery_urls():
        assert url.startswith(("http://", "https://"))


# Durations as the CRD pattern admits them; its CEL rules then bound them.
crd_durations = st.from_regex(r"([0-9]{1,4}(\.[0-9]{1,3})?(ms|s|m|h)){1,3}", fullmatch=True)


@BOUNDED
@given(poll=crd_durations, connect=crd_durations, read=crd_durations)
def test_parsed_durations_are_within_the_crd_bounds(poll: str, connect: str, read: str) -> None:
    raw = {
        "provider": {"static": PROVIDERS["static"]},
        "pollInterval": poll,
        "timeouts": {"connect": connect, "read": read},
    }
    spec = parsed(raw)
    if spec is None:
        return
    assert 1 <= spec.poll_interval <= 3600, poll
    assert 0.1 <= spec.timeouts.connect <= 60, connect
    assert 0.1 <= spec.timeouts.read <= 300, read


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("pollInterval", "2h", id="pollInterval-2h"),
        pytest.param("pollInterval", "9" * 400 + "s", id="pollInterval-infinite"),
        # aiohttp takes a 0 timeout as "no timeout at all"
        pytest.param("timeouts", {"connect": "0s"}, id="connect-0s"),
        pytest.param("timeouts", {"read": "0s"}, id="read-0s"),
        pytest.param("timeouts", {"connect": "2m"}, id="connect-2m"),
        pytest.param("timeouts", {"read": "1h"}, id="read-1h"),
        # infinity: the pipeline's format_duration then raises OverflowError at every poll
        pytest.param("maxStaleness", "9" * 400 + "s", id="maxStaleness-infinite"),
    ],
)
def test_durations_outside_the_crd_bounds_are_refused(field: str, value: Any) -> None:
    """Regression: the CRD bounds pollInterval to 1s..1h, timeouts.connect to 100ms..60s and
    timeouts.read to 100ms..5m; the parser checked only pollInterval >= 1s. A duration of
    over 308 digits parsed as infinity."""
    raw = {"provider": {"static": PROVIDERS["static"]}, field: value}
    with pytest.raises(SpecError, match=field):
        parse_spec(raw)
