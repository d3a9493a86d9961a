"""call_api and cancellation: a worker thread cannot be stopped, so a cancelled task waits
for its call to end, keeps the answer, and sends nothing more. Otherwise a poll cancelled by
a deletion could create a slice after the deletion handler had cleaned up (an orphan)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from directservice.publish.apiclient import WriteError
from directservice.publish.clientcall import call_api

pytestmark = pytest.mark.unit


class Answer:
    def __init__(self, data: bytes) -> None:
        self.data = data


class HeldCall:
    """A client call that blocks in its thread until released; counts what it sent."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sent: list[str] = []

    def __call__(self, name: str, **_: Any) -> Answer:
        self.entered.set()
        self.release.wait(10)
        self.sent.append(name)
        return Answer(b'{"name": "%s"}' % name.encode())


async def turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def until_entered(call: HeldCall) -> None:
    await asyncio.to_thread(call.entered.wait, 10)


def test_a_cancel_waits_for_the_call_and_the_caller_keeps_its_answer() -> None:
    call = HeldCall()
    kept: list[bytes] = []

    async def writer() -> None:
        kept.append(await call_api("create a", call, "a"))
        await asyncio.sleep(0)  # the deferred cancel lands here

    async def scenario() -> None:
        task = asyncio.create_task(writer())
        await until_entered(call)
        task.cancel()
        await turns(20)
        assert not task.done()  # still waiting on the request in its thread
        call.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(scenario())
    assert call.sent == ["a"]
    assert kept == [b'{"name": "a"}']


def test_a_task_with_a_cancel_pending_sends_nothing_more() -> None:
    call = HeldCall()

    async def writer() -> None:
        await call_api("create a", call, "a")
        await call_api("create b", call, "b")  # no await suspends before this one

    async def scenario() -> None:
        task = asyncio.create_task(writer())
        await until_entered(call)
        task.cancel()
        call.release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert call.sent == ["a"]


def test_a_refused_call_under_a_cancel_still_reaches_the_caller_as_a_write_error() -> None:
    entered, release = threading.Event(), threading.Event()
    seen: list[int | None] = []

    def conflict(**_: Any) -> Answer:
        entered.set()
        release.wait(10)
        raise ApiException(status=409, reason="Conflict")

    async def writer() -> None:
        try:
            await call_api("update a", conflict)
        except WriteError as exc:
            seen.append(exc.status)
        await asyncio.sleep(0)

    async def scenario() -> None:
        task = asyncio.create_task(writer())
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert seen == [409]


def test_without_a_cancel_the_answer_comes_back_and_the_task_goes_on() -> None:
    call = HeldCall()
    call.release.set()

    async def scenario() -> bytes:
        first = await call_api("create a", call, "a")
        await asyncio.sleep(0)
        return first + await call_api("create b", call, "b")

    assert asyncio.run(scenario()) == b'{"name": "a"}{"name": "b"}'
    assert call.sent == ["a", "b"]
