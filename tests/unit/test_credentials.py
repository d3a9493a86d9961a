"""Credentials: Secret reading, the shared token cache, and that no secret ever leaks.

The leak tests drive every failure path against a loopback server that is deliberately
hostile: it echoes the credentials it receives into error bodies, redirect targets, garbage
and instance entries. Logs are captured at DEBUG for every logger; nothing the operator logs
or raises may contain a secret value.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery import parse_spec
from directservice.discovery.credentials import (
    REFUSAL_HOLD,
    CachedToken,
    TokenCache,
    digest,
    header_value,
    read_keys,
    secret_not_found,
)
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.modelarts.iam import IamCredentials, keystone_body, parse_expiry
from directservice.discovery.registry import provider_for

pytestmark = pytest.mark.unit

TOKEN = "MIIEtoken-VERY-SECRET-0123456789"
PASSWORD = "Pa55word-VERY-SECRET"
SECRET_KEY = "sk-VERY-SECRET-abcdef"
HEADER_SECRET = "Bearer hdr-VERY-SECRET-42"
SECRETS = (TOKEN, PASSWORD, SECRET_KEY, HEADER_SECRET, "VERY-SECRET")


# --- small parts --------------------------------------------------------------------------


def test_read_keys_names_keys_never_values() -> None:
    async def reader(namespace: str, name: str) -> Mapping[str, str]:
        return {"username": "u", "password": PASSWORD, "empty": ""}

    async def main() -> None:
        got = await read_keys(reader, "ns", "s", ("username", "password"), ("projectId",))
        assert got == {"username": "u", "password": PASSWORD}
        with pytest.raises(DiscoveryError) as info:
            await read_keys(reader, "ns", "s", ("password", "empty", "domainName"))
        assert info.value.reason == "SecretKeyMissing"
        assert "empty, domainName" in info.value.message
        assert PASSWORD not in str(info.value)

    asyncio.run(main())


def test_header_values_are_trimmed_and_checked() -> None:
    assert header_value("  tok\n", "x") == "tok"
    for bad in ("a\nb", "a\rb", "", "\n", "tökén", "a\0b"):
        with pytest.raises(DiscoveryError) as info:
            header_value(bad, "key t of Secret ns/s")
        assert info.value.reason == "InvalidSecretValue"
        assert "key t of Secret ns/s" in info.value.message


def test_cached_tokens_do_not_show_their_value() -> None:
    token = CachedToken(TOKEN, issued_at=0, expires_at=100)
    assert TOKEN not in repr(token)
    assert token.refresh_at == 80
    assert PASSWORD not in repr(IamCredentials("u", PASSWORD, "d"))


def test_digests_are_stable_and_short() -> None:
    assert digest("a", "b") == digest("a", "b") != digest("ab")
    assert len(digest(TOKEN)) == 16 and TOKEN not in digest(TOKEN)


def test_keystone_body() -> None:
    by_id = keystone_body(IamCredentials("u", "p", "d", project_id="p1"))
    assert by_id == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "u", "password": "p", "domain": {"name": "d"}}},
            },
            "scope": {"project": {"id": "p1"}},
        }
    }
    by_name = keystone_body(IamCredentials("u", "p", "d", project_name="cn-north-4"))
    assert by_name["auth"]["scope"] == {"project": {"name": "cn-north-4", "domain": {"name": "d"}}}


@pytest.mark.parametrize(
    ("body", "expires"),
    [
        ({"token": {"expires_at": "1970-01-02T00:00:00.000000Z"}}, 86400.0),
        ({"token": {"expires_at": "1970-01-01T01:00:00+00:00"}}, 3600.0),
        ({"token": {"expires_at": "1970-01-01T01:00:00"}}, 3600.0),  # naive means UTC
        ({"token": {}}, 100.0 + 86400),  # absent: 24 h after issue
        ({"token": {"expires_at": "soon"}}, 100.0 + 86400),
        ({"token": {"expires_at": "1970-01-01T00:00:50Z"}}, 100.0 + 86400),  # already past
        ([], 100.0 + 86400),
    ],
)
def test_parse_expiry(body: Any, expires: float) -> None:
    assert parse_expiry(json.dumps(body).encode(), issued_at=100.0) == expires


def test_token_cache_refresh_single_flight_and_invalidate() -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    fetched: list[int] = []

    async def fetch() -> CachedToken:
        fetched.append(1)
        await asyncio.sleep(0.01)
        return CachedToken(f"t{len(fetched)}", issued_at=now[0], expires_at=now[0] + 100)

    async def main() -> None:
        first = await asyncio.gather(*(cache.get_or_fetch("k", fetch) for _ in range(5)))
        assert {t.value for t in first} == {"t1"} and len(fetched) == 1
        now[0] = 79.0
        assert (await cache.get_or_fetch("k", fetch)).value == "t1"
        now[0] = 80.0  # 80 % of the lifetime: renewed early
        second = await cache.get_or_fetch("k", fetch)
        assert second.value == "t2"
        cache.invalidate("k", first[0])  # a stale token: the newer one stays
        assert cache.fresh("k") is second
        cache.invalidate("k", second)
        assert cache.fresh("k") is None

    asyncio.run(main())


def test_a_refused_login_is_held_back() -> None:
    now = [0.0]
    cache = TokenCache(clock=lambda: now[0])
    calls: list[int] = []

    async def refused() -> CachedToken:
        calls.append(1)
        raise DiscoveryError("CredentialsRejected", "IAM refused the credentials in Secret ns/c")

    async def main() -> None:
        with pytest.raises(DiscoveryError) as first:
            await cache.get_or_fetch("k", refused)
        assert "not retried" not in first.value.message
        for _ in range(3):  # held: IAM is not asked again, which could lock the account
            with pytest.raises(DiscoveryError, match="not retried") as again:
                await cache.get_or_fetch("k", refused)
            assert again.value.reason == "CredentialsRejected"
        assert len(calls) == 1
        now[0] = REFUSAL_HOLD + 1
        with pytest.raises(DiscoveryError):
            await cache.get_or_fetch("k", refused)
        assert len(calls) == 2

    asyncio.run(main())


# --- no secret leaks, whatever the server does --------------------------------------------


def hostile_app() -> web.Application:
    """A ModelArts/IAM/JSON look-alike that echoes every credential it receives."""

    async def login(request: web.Request) -> web.Response:
        body = await request.json()
        password = body["auth"]["identity"]["password"]["user"]["password"]
        if password != PASSWORD:
            return web.json_response({"error": {"message": f"bad password {password}"}}, status=401)
        if request.path.startswith("/crash/"):
            return web.Response(status=500, text=f"crash while checking {password}")
        return web.json_response({"token": {}}, status=201, headers={"X-Subject-Token": TOKEN})

    async def discover(request: web.Request) -> web.StreamResponse:
        seen = " ".join(
            v for k, v in request.headers.items() if k in ("X-Auth-Token", "Authorization", "X-Key")
        )
        mode = request.match_info["service"]
        if mode == "ok":
            return web.json_response([{"ip": "10.0.0.1", "port": 80}, {"ip": seen, "port": 80}])
        if mode == "echo401":
            return web.json_response({"error_code": "APIGW.0301", "error_msg": seen}, status=401)
        if mode == "echo403":
            return web.json_response({"error_code": "X.0001", "error_msg": seen}, status=403)
        if mode == "echo500":
            return web.Response(status=500, text=f"upstream failed for {seen}")
        if mode == "redirect":
            return web.Response(status=302, headers={"Location": f"http://e.example/?t={seen}"})
        if mode == "garbage":
            return web.Response(status=200, text=f"<html>{seen}")
        if mode == "shape":
            return web.json_response({"token": seen})
        if mode == "slow":
            await asyncio.sleep(2)
        return web.json_response([])

    app = web.Application()
    app.router.add_post("/v3/auth/tokens", login)
    app.router.add_post("/crash/v3/auth/tokens", login)
    app.router.add_get("/v1/p1/services/{service}/predict/endpoints", discover)
    app.router.add_get("/json/{service}", discover)
    return app


@asynccontextmanager
async def hostile() -> AsyncIterator[str]:
    runner = web.AppRunner(hostile_app(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


SECRET_DATA = {
    "iam": {"username": "u", "password": PASSWORD, "domainName": "d"},
    "wrong": {"username": "u", "password": PASSWORD + "-x", "domainName": "d"},
    "token": {"token": TOKEN},
    "newline": {"token": TOKEN + "\ninjected: 1"},
    "aksk": {"accessKey": "AK1", "secretKey": SECRET_KEY},
    "header": {"key": HEADER_SECRET},
}


async def reader(namespace: str, name: str) -> Mapping[str, str]:
    if name not in SECRET_DATA:
        raise secret_not_found(namespace, name)
    return SECRET_DATA[name]


def modelarts(base: str, service: str, secret: str, **extra: Any) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": secret}
    body: dict[str, Any] = {"endpoint": base, "projectId": "p1", "serviceId": service}
    if secret in ("token", "newline"):
        ref["tokenKey"] = "token"
    elif secret == "aksk":
        body["authMethod"] = "AccessKey"
    else:
        body["iamEndpoint"] = extra.pop("iam", base)
    return {"provider": {"modelArts": {**body, "credentialsSecretRef": ref}}, **extra}


def http_json(base: str, service: str) -> dict[str, Any]:
    header = {"name": "X-Key", "valueFrom": {"secretKeyRef": {"name": "header", "key": "key"}}}
    return {"provider": {"httpJson": {"url": f"{base}/json/{service}", "headers": [header]}}}


CASES = [
    ("modelArts password, 401 echoing the token", lambda b: modelarts(b, "echo401", "iam")),
    ("modelArts password, 403 echoing the token", lambda b: modelarts(b, "echo403", "iam")),
    ("modelArts password, 5xx echoing the token", lambda b: modelarts(b, "echo500", "iam")),
    ("modelArts wrong IAM password, echoed", lambda b: modelarts(b, "ok", "wrong")),
    ("modelArts IAM 5xx echoing password", lambda b: modelarts(b, "ok", "iam", iam=b + "/crash")),
    ("modelArts redirect carrying the token", lambda b: modelarts(b, "redirect", "iam")),
    ("modelArts garbage echoing the token", lambda b: modelarts(b, "garbage", "iam")),
    ("modelArts wrong shape echoing the token", lambda b: modelarts(b, "shape", "iam")),
    ("modelArts token mode, 401 echoing it", lambda b: modelarts(b, "echo401", "token")),
    ("modelArts token with a line break", lambda b: modelarts(b, "ok", "newline")),
    ("modelArts AK/SK, 401 echoing the signature", lambda b: modelarts(b, "echo401", "aksk")),
    ("modelArts timeout", lambda b: {**modelarts(b, "slow", "iam"), "timeouts": {"read": "200ms"}}),
    ("httpJson header, 5xx echoing it", lambda b: http_json(b, "echo500")),
    ("httpJson header, 401 echoing it", lambda b: http_json(b, "echo401")),
    ("httpJson header, redirect carrying it", lambda b: http_json(b, "redirect")),
    ("httpJson header, garbage echoing it", lambda b: http_json(b, "garbage")),
    ("httpJson header echoed into an entry", lambda b: http_json(b, "ok")),
    ("modelArts token echoed into an entry", lambda b: modelarts(b, "ok", "iam")),
]  # fmt: skip


OUTCOMES = [  # what each case must come to, so the sweep cannot pass by failing early
    "Unauthorized", "Unauthorized", "ServerError", "CredentialsRejected", "ServerError",
    "Redirected", "InvalidJSON", "WrongShape", "Unauthorized", "InvalidSecretValue",
    "Unauthorized", "Timeout", "ServerError", "Unauthorized", "Redirected", "InvalidJSON",
    "published", "published",
]  # fmt: skip


def visible_text(outcome: Discovery | DiscoveryError) -> str:
    """Everything of a poll's outcome that could reach status, Events, logs or metrics."""
    if isinstance(outcome, DiscoveryError):
        parts = [str(outcome), repr(outcome), outcome.message, outcome.reason]
        cause = outcome.__cause__ or outcome.__context__
        while cause is not None:
            parts.append(repr(cause))
            cause = cause.__cause__ or cause.__context__
        return "\n".join(parts)
    return "\n".join(f"{d.entry} {d.reason}" for d in outcome.dropped) + repr(outcome)


@pytest.mark.parametrize(
    ("build", "expected"),
    [(c[1], o) for c, o in zip(CASES, OUTCOMES, strict=True)],
    ids=[c[0] for c in CASES],
)
def test_no_secret_in_errors_results_or_logs(
    build: Any, expected: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    async def main() -> tuple[Discovery | DiscoveryError, str]:
        async with hostile() as base:
            spec = parse_spec(build(base))
            provider = provider_for(spec, namespace="ns", secrets=reader)
            http = HttpClient()
            try:
                outcome: Discovery | DiscoveryError = await provider.discover(http)
            except DiscoveryError as exc:
                outcome = exc
            finally:
                await http.close()
            return outcome, repr(spec) + repr(provider.__dict__)

    outcome, objects = asyncio.run(main())
    if isinstance(outcome, DiscoveryError):
        assert outcome.reason == expected
    else:
        assert expected == "published"
        assert [d.entry for d in outcome.dropped] == ["[redacted]:80"]  # the echo, scrubbed
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records)
    for text in (visible_text(outcome), logged):
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked: {text[:500]}"
    for secret in SECRETS:  # nor in what a debugger or a stray log of the objects shows
        assert secret not in objects
