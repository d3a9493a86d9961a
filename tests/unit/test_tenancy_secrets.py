"""Secrets come only from the DirectService's own namespace: no spec can name another, every
provider asks for its own namespace only, and the reader refuses what is not a DNS name."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from directservice.api.reasons import Reason
from directservice.api.spec import SpecError
from directservice.core.model import DiscoveryError
from directservice.discovery import parse_spec, provider_for
from directservice.discovery.httpclient import HttpClient
from directservice.publish.apiclient import ApiEndpoint, ApiTransport
from directservice.publish.secrets import SecretReader

pytestmark = pytest.mark.unit

# Nothing listens here, and nothing is sent: every path below stops before a request.
NOWHERE = "http://127.0.0.1:9"
HEADER = {"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}
PROVIDERS: dict[str, dict[str, Any]] = {
    "httpJson": {"httpJson": {"url": f"{NOWHERE}/hosts", "headers": [HEADER]}},
    "modelArts-token": {
        "modelArts": {
            "endpoint": NOWHERE, "projectId": "p1", "serviceId": "s1",
            "credentialsSecretRef": {"name": "creds", "tokenKey": "token"},
        }
    },
    "modelArts-password": {
        "modelArts": {
            "endpoint": NOWHERE, "projectId": "p1", "serviceId": "s1",
            "iamEndpoint": NOWHERE, "credentialsSecretRef": {"name": "creds"},
        }
    },
    "modelArts-accesskey": {
        "modelArts": {
            "endpoint": NOWHERE, "projectId": "p1", "serviceId": "s1",
            "authMethod": "AccessKey", "credentialsSecretRef": {"name": "creds"},
        }
    },
}  # fmt: skip


def spec_of(provider: dict[str, Any]) -> dict[str, Any]:
    return {"provider": provider, "port": {"name": "http"}}


def with_namespace(provider: dict[str, Any]) -> dict[str, Any]:
    """`provider` with its Secret reference naming another namespace."""
    ((kind, body),) = provider.items()
    if kind == "httpJson":
        ref = {**HEADER["valueFrom"]["secretKeyRef"], "namespace": "team-b"}
        return {kind: {**body, "headers": [{**HEADER, "valueFrom": {"secretKeyRef": ref}}]}}
    ref = {**body["credentialsSecretRef"], "namespace": "team-b"}
    return {kind: {**body, "credentialsSecretRef": ref}}


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_a_secret_reference_naming_a_namespace_is_refused(kind: str) -> None:
    parse_spec(spec_of(PROVIDERS[kind]))  # the same reference without it is fine
    with pytest.raises(SpecError) as info:
        parse_spec(spec_of(with_namespace(PROVIDERS[kind])))
    assert ".namespace is not allowed" in str(info.value)
    assert "own namespace" in str(info.value)


@pytest.mark.parametrize("kind", sorted(PROVIDERS))
def test_providers_ask_for_secrets_in_their_own_namespace_only(kind: str) -> None:
    asked: list[tuple[str, str]] = []

    async def reader(namespace: str, name: str) -> Mapping[str, str]:
        asked.append((namespace, name))
        raise DiscoveryError(Reason.SECRET_NOT_FOUND, "recorded")

    async def main() -> None:
        provider = provider_for(parse_spec(spec_of(PROVIDERS[kind])), namespace="team-a",
                                secrets=reader)  # fmt: skip
        http = HttpClient()
        try:
            with pytest.raises(DiscoveryError) as info:
                await provider.discover(http)
            assert info.value.message == "recorded"
        finally:
            provider.close()
            await http.close()

    asyncio.run(main())
    assert asked and set(asked) == {("team-a", "creds")}


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("team-a", "../../namespaces/team-b/secrets/creds"),
        ("team-a", "creds/x"),
        ("team-a", "creds\n"),
        ("team-a", "Creds"),
        ("team-a", ""),
        ("team-a/../team-b", "creds"),
        ("", "creds"),
    ],
)
def test_the_secret_reader_refuses_what_is_not_a_name_before_any_request(
    namespace: str, name: str
) -> None:
    reader = SecretReader(ApiTransport(ApiEndpoint(NOWHERE)))

    with pytest.raises(DiscoveryError) as info:
        asyncio.run(reader(namespace, name))

    # SecretUnavailable would mean a request was tried (nothing listens on port 9).
    assert info.value.reason == Reason.SECRET_NOT_FOUND
    assert "not a valid namespace and name" in info.value.message
