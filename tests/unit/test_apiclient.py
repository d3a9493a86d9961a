"""ApiTransport against a real HTTP server on loopback: the credentials of the latest login
are the ones sent, a session serves one event loop, and a write that a cancel interrupts
still ends and is kept (the API server's own answers are in tests/integration/test_writer.py).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager

import pytest
from aiohttp import web

from directservice.api.reasons import Reason
from directservice.publish.apiclient import ApiEndpoint, ApiTransport, WriteError, finish_first
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
            with pytest.raises(WriteError) as info:  # before any login
                await api.request("create x", "POST", "/x", body={})
            assert info.value.reason == Reason.PUBLISH_UNAVAILABLE
            api.use(ApiEndpoint(server, {"Authorization": "Bearer first"}))
            await api.request("create x", "POST", "/x", body={})
            api.use(ApiEndpoint(server, {"Authorization": "Bearer renewed"}))
            await api.request("create x", "POST", "/x", body={})
            await api.close()

    asyncio.run(scenario())
    assert seen == ["Bearer first", "Bearer renewed"]


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


def test_a_cancelled_write_still_lands_and_the_cancel_comes_after() -> None:
    landed: list[str] = []

    async def scenario() -> list[bytes]:
        arrived, release = asyncio.Event(), asyncio.Event()

        async def slow(request: web.Request) -> web.Response:
            arrived.set()
            await release.wait()
            landed.append(request.path)
            return web.json_response({"metadata": {"name": "web"}})

        kept: list[bytes] = []
        async with serving(slow) as server:
            api = ApiTransport(ApiEndpoint(server))

            async def write() -> None:
                kept.append(await finish_first(lambda: api.request("c", "POST", "/svc")))
                await asyncio.sleep(0)  # the deferred cancel lands here
                kept.append(b"never")

            task = asyncio.create_task(write())
            await arrived.wait()  # the write is at the server
            task.cancel()
            release.set()
            with pytest.raises(asyncio.CancelledError):
                await task
            await api.close()
        return kept

    kept = asyncio.run(scenario())
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
