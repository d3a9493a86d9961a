"""The ModelArts provider against the emulator over loopback HTTP: IAM login, token cache,
re-authentication, token and AK/SK modes, Secret errors, and the shared call budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import pytest

from directservice.core.model import Discovery, DiscoveryError, Instance
from directservice.discovery import parse_spec
from directservice.discovery.budget import RateBudgets
from directservice.discovery.credentials import REFRESH_FRACTION, TokenCache, secret_not_found
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.registry import Provider, provider_for
from directservice.emulator import EmulatorThread

pytestmark = pytest.mark.unit

PASSWORD = "pw-Secret-123"
IAM = {
    "users": [
        {
            "name": "alice",
            "password": PASSWORD,
            "domain": "acme",
            "projects": [{"id": "p1", "name": "cn-north-4"}],
        },
        {"name": "bob", "password": "bob-pw", "domain": "acme", "projects": [{"id": "p1"}]},
    ],
    "access_keys": [{"access_key": "AKALICE", "secret_key": "sk-alice", "user": "alice"}],
}
INSTANCES = [
    {"ip": "192.168.0.10", "port": 31997, "schema": "http"},
    {"ip": "192.168.0.11", "port": 31998, "schema": "https"},
]
EXPECTED = (
    Instance("192.168.0.10", 31997, scheme="http"),
    Instance("192.168.0.11", 31998, scheme="https"),
)


EMULATOR = {"services": {"svc-1": INSTANCES}, "iam": IAM}  # for the `emu` fixture


@pytest.fixture(autouse=True)
def _restore(emu: EmulatorThread) -> Iterator[None]:
    """Undo what a test changed beyond faults and requests: alice's password, the shape."""
    yield
    emu.put_iam_user("alice", PASSWORD, "acme", [{"id": "p1", "name": "cn-north-4"}])
    emu.set_modelarts_shape()


class Secrets:
    """An in-memory SecretReader that counts reads."""

    def __init__(self, data: Mapping[tuple[str, str], Mapping[str, str]]) -> None:
        self.data = {k: dict(v) for k, v in data.items()}

    async def __call__(self, namespace: str, name: str) -> Mapping[str, str]:
        found = self.data.get((namespace, name))
        if found is None:
            raise secret_not_found(namespace, name)
        return found


ALICE = {"username": "alice", "password": PASSWORD, "domainName": "acme"}


def spec_for(emu: EmulatorThread, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endpoint": emu.url,
        "projectId": "p1",
        "serviceId": "svc-1",
        "credentialsSecretRef": {"name": "creds"},
        "iamEndpoint": emu.iam_url,
        **changes,
    }
    return {"provider": {"modelArts": {k: v for k, v in body.items() if v is not None}}}


def make(
    spec: dict[str, Any],
    secrets: Secrets,
    *,
    namespace: str = "ns",
    cache: TokenCache | None = None,
    budgets: RateBudgets | None = None,
    member: str = "ns/a",
) -> Provider:
    return provider_for(
        parse_spec(spec),
        namespace=namespace,
        secrets=secrets,
        token_cache=cache if cache is not None else TokenCache(),
        budgets=budgets,
        member_id=member,
    )


def run(work: Callable[[HttpClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        http = HttpClient()
        try:
            return await work(http)
        finally:
            await http.close()

    return asyncio.run(main())


def failure(provider: Provider) -> DiscoveryError:
    async def work(http: HttpClient) -> DiscoveryError:
        with pytest.raises(DiscoveryError) as info:
            await provider.discover(http)
        return info.value

    result: DiscoveryError = run(work)
    return result


def logins(emu: EmulatorThread, user: str = "alice") -> int:
    return int(emu.iam()["logins"].get(user, 0))


# --- password login -------------------------------------------------------------------


def test_password_login_discovers_with_per_instance_schemes(emu: EmulatorThread) -> None:
    before = logins(emu)
    provider = make(spec_for(emu), Secrets({("ns", "creds"): ALICE}))

    async def work(http: HttpClient) -> list[Discovery]:
        return [await provider.discover(http) for _ in range(3)]

    results = run(work)
    assert all(r.instances == EXPECTED for r in results)
    assert logins(emu) == before + 1  # one login, then the cached token
    assert emu.requests()["per_credential"] == {"user:alice": 3}


def test_services_with_the_same_credentials_share_one_login(emu: EmulatorThread) -> None:
    before = logins(emu)
    cache = TokenCache()
    secrets = Secrets({("ns1", "creds"): ALICE, ("ns2", "other-name"): ALICE})
    first = make(spec_for(emu), secrets, namespace="ns1", cache=cache)
    second = make(
        spec_for(emu, credentialsSecretRef={"name": "other-name"}),
        secrets,
        namespace="ns2",
        cache=cache,
    )

    async def work(http: HttpClient) -> None:
        await asyncio.gather(first.discover(http), second.discover(http), first.discover(http))

    run(work)
    assert logins(emu) == before + 1  # single-flight across services and namespaces


def test_a_revoked_token_is_renewed_once(emu: EmulatorThread) -> None:
    cache = TokenCache()
    provider = make(spec_for(emu), Secrets({("ns", "creds"): ALICE}), cache=cache)
    run(provider.discover)
    before = logins(emu)
    emu.revoke_tokens("alice")  # e.g. the password was changed elsewhere
    assert run(provider.discover).instances == EXPECTED
    assert logins(emu) == before + 1
    statuses = [e["status"] for e in emu.requests()["log"]]
    assert statuses == [200, 401, 200]


def test_renewal_happens_only_once_per_poll(emu: EmulatorThread) -> None:
    provider = make(spec_for(emu), Secrets({("ns", "creds"): ALICE}))
    run(provider.discover)
    before = logins(emu)
    body = '{"error_code": "APIGW.0307", "error_msg": "The token must be updated."}'
    emu.add_fault("status", status=401, body=body, count=5)
    error = failure(provider)
    assert error.reason == "Unauthorized"
    assert "APIGW.0307" in error.message
    assert logins(emu) == before + 1  # one new login, not a loop
    assert emu.requests()["total"] == 3  # first poll + two calls of the failing poll


def test_the_token_is_renewed_before_it_expires(emu: EmulatorThread) -> None:
    now = [time.time()]
    cache = TokenCache(clock=lambda: now[0])
    provider = make(spec_for(emu), Secrets({("ns", "creds"): ALICE}), cache=cache)
    run(provider.discover)
    before = logins(emu)
    now[0] += 24 * 3600 * REFRESH_FRACTION - 60  # just before the refresh point
    run(provider.discover)
    assert logins(emu) == before
    now[0] += 120  # just after it: renewed although the token still has hours left
    run(provider.discover)
    assert logins(emu) == before + 1


def test_expires_at_from_the_answer_is_used() -> None:
    with EmulatorThread({"svc-1": INSTANCES}, iam={**IAM, "token_ttl": 1000}) as emu:
        cache = TokenCache()
        provider = make(spec_for(emu), Secrets({("ns", "creds"): ALICE}), cache=cache)
        started = time.time()
        run(provider.discover)
        (token,) = cache._tokens.values()
        assert token.expires_at - started == pytest.approx(1000, abs=5)


def test_a_wrong_password_is_reported_and_not_retried_until_the_secret_changes(
    emu: EmulatorThread,
) -> None:
    secrets = Secrets({("ns", "creds"): {**ALICE, "password": "wrong"}})
    provider = make(spec_for(emu), secrets)
    failed_before = emu.iam()["failed_logins"].get("alice", 0)
    first, second = failure(provider), failure(provider)
    assert first.reason == second.reason == "CredentialsRejected"
    assert "Secret ns/creds" in first.message
    assert "not retried" in second.message
    assert emu.iam()["failed_logins"]["alice"] == failed_before + 1  # IAM asked only once
    assert emu.requests()["total"] == 0  # ModelArts never called without a token
    secrets.data[("ns", "creds")]["password"] = PASSWORD
    assert run(provider.discover).instances == EXPECTED


def test_the_secret_can_scope_the_login_by_project_name(emu: EmulatorThread) -> None:
    secrets = Secrets({("ns", "creds"): {**ALICE, "projectName": "cn-north-4"}})
    assert run(make(spec_for(emu), secrets).discover).instances == EXPECTED
    wrong = Secrets({("ns", "creds"): {**ALICE, "projectName": "eu-west-0"}})
    assert failure(make(spec_for(emu), wrong)).reason == "CredentialsRejected"


# --- token and AK/SK modes ------------------------------------------------------------


def token_spec(emu: EmulatorThread) -> dict[str, Any]:
    return spec_for(emu, iamEndpoint=None, credentialsSecretRef={"name": "tok", "tokenKey": "t"})


def test_a_ready_token_from_a_secret(emu: EmulatorThread) -> None:
    token = emu.login("bob", "bob-pw", "acme", "p1")
    provider = make(token_spec(emu), Secrets({("ns", "tok"): {"t": token + "\n"}}))
    assert run(provider.discover).instances == EXPECTED
    assert emu.requests()["per_credential"] == {"user:bob": 1}


def test_a_dead_ready_token_is_reported_with_a_hint(emu: EmulatorThread) -> None:
    token = emu.login("bob", "bob-pw", "acme", "p1")
    emu.revoke_tokens("bob")
    before = logins(emu, "bob")
    error = failure(make(token_spec(emu), Secrets({("ns", "tok"): {"t": token}})))
    assert error.reason == "Unauthorized"
    assert "APIGW.0301" in error.message and "key t" in error.message
    assert "24 h" in error.message
    assert logins(emu, "bob") == before  # nothing to log in with: no retry


def test_access_key_signing_is_accepted_by_the_emulator(emu: EmulatorThread) -> None:
    spec = spec_for(emu, iamEndpoint=None, authMethod="AccessKey")
    good = Secrets({("ns", "creds"): {"accessKey": "AKALICE", "secretKey": "sk-alice"}})
    assert run(make(spec, good).discover).instances == EXPECTED
    bad = Secrets({("ns", "creds"): {"accessKey": "AKALICE", "secretKey": "sk-wrong"}})
    error = failure(make(spec, bad))
    assert error.reason == "Unauthorized" and "AK/SK" in error.message


# --- Secrets --------------------------------------------------------------------------


def test_a_missing_secret_and_a_missing_key(emu: EmulatorThread) -> None:
    missing = failure(make(spec_for(emu), Secrets({})))
    assert missing.reason == "SecretNotFound"
    assert "ns/creds" in missing.message
    no_key = failure(make(spec_for(emu), Secrets({("ns", "creds"): {"username": "alice"}})))
    assert no_key.reason == "SecretKeyMissing"
    assert "password" in no_key.message and "domainName" in no_key.message


# --- shapes through HTTP --------------------------------------------------------------


def test_a_nested_shape_with_renamed_fields(emu: EmulatorThread) -> None:
    emu.set_modelarts_shape(
        list="data.host_endpoints", rename={"ip": "host_ip", "schema": "protocol"}
    )
    assert (
        run(make(spec_for(emu), Secrets({("ns", "creds"): ALICE})).discover).instances == EXPECTED
    )


def test_a_shape_only_field_paths_can_read(emu: EmulatorThread) -> None:
    emu.set_modelarts_shape(list="", rename={"ip": "nodeAddr", "port": "listen", "schema": "kind"})
    secrets = Secrets({("ns", "creds"): ALICE})
    assert failure(make(spec_for(emu), secrets)).reason == "WrongShape"
    # Naming the address field is enough for the list to be found; port and scheme as well.
    fields = {"ip": "nodeAddr", "port": "listen", "scheme": "kind"}
    assert run(make(spec_for(emu, fields=fields), secrets).discover).instances == EXPECTED


# --- the shared budget ------------------------------------------------------------------


def test_a_shared_budget_holds_over_real_http(emu: EmulatorThread) -> None:
    """Four services on one IAM user, 300 calls/min (5 per second), polling as fast as they
    can for two seconds: the emulator's own count of that user's calls stays in budget."""
    budgets = RateBudgets()
    cache = TokenCache()
    secrets = Secrets({("ns", "creds"): ALICE})
    spec = {**spec_for(emu), "rateBudget": {"callsPerMinute": 300}}
    providers = [
        make(spec, secrets, cache=cache, budgets=budgets, member=f"ns/s{i}") for i in range(4)
    ]

    async def work(http: HttpClient) -> float:
        started = time.monotonic()

        async def poll(provider: Provider) -> None:
            while time.monotonic() - started < 2.0:
                await provider.discover(http)

        await asyncio.gather(*(poll(p) for p in providers))
        return providers[0].effective_interval(0.1)

    interval = run(work)
    seen = emu.requests()
    times = sorted(e["time"] for e in seen["log"] if e["credential"] == "user:alice")
    assert seen["per_credential"]["user:alice"] == len(times) >= 8
    # The bucket allows one stored call plus 5 per second in any stretch of time. The
    # emulator stamps answers, not arrivals, so allow one call of network jitter.
    for i, start in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= 1 + 5 * (times[j] - start) + 1, (i, j)
    assert interval == pytest.approx(4 * 60 / 300)  # 0.8 s each, so that 4 fit
    for provider in providers:
        provider.close()


def test_budget_defaults_come_from_the_operator_unless_the_spec_sets_one(
    emu: EmulatorThread,
) -> None:
    secrets = Secrets({})
    plain = make(spec_for(emu), secrets)
    flagged = make(spec_for(emu), secrets, budgets=RateBudgets(defaults={"modelArts": 2000.0}))
    own = make(
        {**spec_for(emu), "rateBudget": {"callsPerMinute": 5}},
        secrets,
        budgets=RateBudgets(defaults={"modelArts": 2000.0}),
    )
    assert [getattr(p, "calls_per_minute", None) for p in (plain, flagged, own)] == [
        20.0,
        2000.0,
        5,
    ]
