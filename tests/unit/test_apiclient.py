"""ApiTransport against a real HTTP server on loopback: the credentials of the latest login
are the ones sent, a session serves one event loop, and a write that a cancel interrupts
still ends and is kept (the API server's own answers are in tests/integration/test_writer.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from directservice.api.reasons import Reason
from directservice.publish.apiclient import (
    ApiEndpoint,
    ApiTransport,
    WriteError,
    finish_first,
    service_account_token_file,
)
from loopback import Handler, serve

pytestmark = pytest.mark.unit


def serving(handler: Handler) -> AbstractAsyncContextManager[str]:
    return serve({"/{tail:.*}": handler}, method="*")


def test_the_latest_login_names_the_credentials_sent() -> None:
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.json_response({"kind": "Status"})

    async def scenario() -> None:
        async with serving(record) as server:
            api = ApiTransport()
            early = asyncio.create_task(api.request("create x", "POST", "/x", body={}))
            await asyncio.sleep(0)  # the call is made, and waits for a login
            api.use(ApiEndpoint(server, {"Authorization": "Bearer first"}))
            await early
            api.use(ApiEndpoint(server, {"Authorization": "Bearer renewed"}))
            await api.request("create x", "POST", "/x", body={})
            await api.close()

    asyncio.run(scenario())
    assert seen == ["Bearer first", "Bearer renewed"]


def test_a_call_without_a_login_fails_as_unavailable() -> None:
    async def scenario() -> WriteError:
        with pytest.raises(WriteError) as info:
            await ApiTransport(login_wait=0).request("create x", "POST", "/x", body={})
        return info.value

    err = asyncio.run(scenario())
    assert (err.reason, err.message) == (
        Reason.PUBLISH_UNAVAILABLE,
        "not logged in to the API server yet",
    )


def test_one_transport_serves_one_event_loop_after_another() -> None:
    """Each asyncio.run is a new loop; a session of a closed loop is never reused."""
    answers: list[bytes] = []
    api = ApiTransport()

    async def once(n: int) -> None:
        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"n": n, "body": await request.json()})

        async with serving(echo) as server:
            api.use(ApiEndpoint(server))
            answers.append(await api.request("patch", "PATCH", "/y", body={"k": n}))

    asyncio.run(once(1))
    asyncio.run(once(2))
    assert [json.loads(a) for a in answers] == [
        {"n": 1, "body": {"k": 1}},
        {"n": 2, "body": {"k": 2}},
    ]


def test_an_error_status_is_refused_with_the_servers_message() -> None:
    async def invalid(request: web.Request) -> web.Response:
        return web.json_response({"kind": "Status", "message": "spec.port: Invalid"}, status=422)

    async def scenario() -> WriteError:
        async with serving(invalid) as server:
            api = ApiTransport(ApiEndpoint(server))
            try:
                with pytest.raises(WriteError) as info:
                    await api.request("create Service web", "POST", "/s", body={})
                return info.value
            finally:
                await api.close()

    err = asyncio.run(scenario())
    assert (err.reason, err.status) == (Reason.PUBLISH_INVALID, 422)
    assert err.message == "create Service web: rejected as invalid: spec.port: Invalid"


async def cancelled_at_the_server(
    status: int, answer: dict[str, Any], write: Callable[[ApiTransport], Awaitable[None]]
) -> list[str]:
    """Run `write` in a task, cancel it while its request is held at the server, then let
    the server answer. Returns the paths of the requests that reached the server."""
    arrived, release = asyncio.Event(), asyncio.Event()
    landed: list[str] = []

    async def held(request: web.Request) -> web.Response:
        landed.append(request.path)
        arrived.set()
        await release.wait()
        return web.json_response(answer, status=status)

    async with serving(held) as server:
        api = ApiTransport(ApiEndpoint(server))
        task = asyncio.create_task(write(api))
        await arrived.wait()  # the write is at the server
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await api.close()
    return landed


def test_a_cancelled_write_still_lands_and_the_cancel_comes_after() -> None:
    kept: list[bytes] = []

    async def write(api: ApiTransport) -> None:
        kept.append(await finish_first(lambda: api.request("c", "POST", "/svc")))
        # No await suspends before this one: the deferred cancel stops it unsent.
        kept.append(await finish_first(lambda: api.request("c", "POST", "/next")))

    landed = asyncio.run(cancelled_at_the_server(200, {"metadata": {"name": "web"}}, write))
    assert landed == ["/svc"]
    assert [json.loads(k) for k in kept] == [{"metadata": {"name": "web"}}]


def test_a_task_with_a_cancel_pending_sends_nothing() -> None:
    started: list[bool] = []

    async def start() -> bytes:
        started.append(True)
        return b"{}"

    async def cancelled_first() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # pending: delivered at the next await
        await finish_first(start)

    async def scenario() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(cancelled_first())

    asyncio.run(scenario())
    assert started == []


def test_a_refusal_under_a_cancel_still_reaches_the_caller_as_a_write_error() -> None:
    seen: list[int | None] = []

    async def write(api: ApiTransport) -> None:
        try:
            await finish_first(lambda: api.request("update a", "PUT", "/a", body={}))
        except WriteError as exc:
            seen.append(exc.status)
        await asyncio.sleep(0)  # the deferred cancel lands here

    asyncio.run(cancelled_at_the_server(409, {"kind": "Status", "reason": "Conflict"}, write))
    assert seen == [409]


def test_a_401_reads_the_rotated_service_account_token_and_sends_once_more(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    seen: list[str] = []

    async def only_the_current_token(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer rotated":
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        return web.json_response({"ok": True})

    async def scenario() -> tuple[bytes, WriteError]:
        async with serving(only_the_current_token) as server:
            assert service_account_token_file("first", str(token_file)) == str(token_file)
            api = ApiTransport(
                ApiEndpoint(server, {"Authorization": "Bearer first"}, token_file=str(token_file))
            )
            token_file.write_text("rotated\n")  # the kubelet's rotation
            answer = await api.request("patch status", "PATCH", "/s", body={})
            token_file.write_text("revoked\n")
            seen.append("--")
            await api.request("patch status", "PATCH", "/s", body={})  # still rotated: fine
            stale = ApiTransport(ApiEndpoint(server, {"Authorization": "Bearer first"}))
            with pytest.raises(WriteError) as info:  # no token file: refused as it is
                await stale.request("patch status", "PATCH", "/s", body={})
            await api.close()
            await stale.close()
        return answer, info.value

    answer, refused = asyncio.run(scenario())
    assert json.loads(answer) == {"ok": True}
    assert seen == ["Bearer first", "Bearer rotated", "--", "Bearer rotated", "Bearer first"]
    assert (refused.reason, refused.status) == (Reason.PUBLISH_API_ERROR, 401)


def test_a_token_not_from_the_service_account_file_names_no_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("in-cluster\n")
    assert service_account_token_file("from-a-kubeconfig", str(token_file)) is None
    assert service_account_token_file(None, str(token_file)) is None
    assert service_account_token_file("in-cluster", str(tmp_path / "absent")) is None
