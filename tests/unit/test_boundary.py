"""The error boundary's own rules: safe messages, and a deletion that never hangs on a poll."""

from __future__ import annotations

import asyncio

import pytest

from directservice.api.names import Owner
from directservice.controller import reconciler as reconciler_module
from directservice.controller.reconciler import Reconciler, Shared
from directservice.core.model import Discovery, InternalError, PublishedSlice, ServiceShape
from directservice.discovery.base import discover_scrubbed
from directservice.discovery.httpclient import HttpClient
from directservice.discovery.static import StaticProvider
from directservice.publish.apiclient import ApiEndpoint
from directservice.publish.writer import KubeWriter

SECRET = "s3cr3t-t0ken-value-0123456789"


def test_an_unforeseen_exception_is_scrubbed_before_it_is_cut() -> None:
    """A secret that straddles the 200-character cut must not survive as a prefix."""

    async def attempt(used: list[str]) -> Discovery:
        used.append(SECRET)
        raise KeyError("x" * 190 + SECRET)

    with pytest.raises(InternalError) as caught:
        asyncio.run(discover_scrubbed(attempt))
    assert SECRET[:6] not in caught.value.message
    assert caught.value.message.startswith("KeyError: ")
    assert SECRET[:6] not in caught.value.trace


class EmptyView:
    def slices(self, namespace: str, name: str) -> list[PublishedSlice]:
        return []

    def service(self, namespace: str, name: str) -> ServiceShape | None:
        return None


class Never:
    """A daemon stop flag that never fires."""

    def __bool__(self) -> bool:
        return False

    async def wait(self) -> object:
        await asyncio.Event().wait()
        return None


def test_close_cancels_a_poll_that_does_not_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reconciler_module, "CLOSE_GRACE", 0.05)
    monkeypatch.setattr(reconciler_module, "MAX_START_JITTER", 0.0)
    entered, cancelled = asyncio.Event(), []

    async def stuck(self: StaticProvider, http: HttpClient) -> Discovery:
        entered.set()
        try:
            await asyncio.Event().wait()  # e.g. queued on a shared budget
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        raise AssertionError("unreachable")

    monkeypatch.setattr(StaticProvider, "discover", stuck)
    body = {
        "metadata": {"generation": 1},
        "spec": {"provider": {"static": {"instances": [{"ip": "10.0.0.1", "port": 80}]}}},
    }

    async def scenario() -> None:
        writer = KubeWriter(ApiEndpoint(server="http://127.0.0.1:9"))
        shared = Shared(writer=writer, http=HttpClient(), view=EmptyView())
        rec = Reconciler(owner=Owner("ns", "stuck", "uid-1"), shared=shared)
        loop = asyncio.ensure_future(rec.run(lambda: body, Never()))
        await asyncio.wait_for(entered.wait(), 10)
        await asyncio.wait_for(rec.close(), 10)
        await asyncio.wait_for(loop, 10)  # the loop ended instead of polling again
        await shared.http.close()

    asyncio.run(scenario())
    assert cancelled == [True]
