"""The checker in its child process: a real child, the real TCP probe, loopback targets.

Verdicts reach the watching loop, the child's counts reach this process's /metrics, a
watch that drops a failing target drops its verdict at once, a killed child is restarted
and told every watch again, and close() leaves no process behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

import pytest

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import EndpointId
from directservice.health.process import CheckerProcess
from directservice.obs import metrics

pytestmark = pytest.mark.unit

SPEC = HealthCheckSpec(interval=0.05, timeout=1.0, unhealthy_threshold=2, healthy_threshold=1)
WAIT = 20.0


def _sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def _until(what: str, done: Callable[[], bool], changed: asyncio.Event) -> None:
    """Until `done()`, re-checked at each on_change and every 0.25 s (the child's counts
    come in batches every 0.2 s, and no callback tells of them)."""
    async with asyncio.timeout(WAIT):
        while not done():
            changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.25)
    assert done(), what


@asynccontextmanager
async def _ports() -> AsyncIterator[tuple[int, int]]:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    refused = socket.socket()  # bound, never listening: a connect is refused
    refused.bind(("127.0.0.1", 0))
    try:
        yield server.sockets[0].getsockname()[1], refused.getsockname()[1]
    finally:
        server.close()
        refused.close()


async def _failing(down: EndpointId, *keys: str) -> tuple[CheckerProcess, asyncio.Event]:
    """A started checker watching `down` under each key, once it fails under every one."""
    checker = CheckerProcess(max_in_flight=16)
    checker.start()
    changed = asyncio.Event()
    for key in keys:
        checker.watch(key, SPEC, {down: False}, changed.set)
    await _until("failing", lambda: all(checker.failing(k) == {down} for k in keys), changed)
    return checker, changed


def _run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())  # type: ignore[arg-type]


def test_verdicts_and_counts_come_back_from_the_child() -> None:
    async def body() -> None:
        async with _ports() as (open_port, closed_port):
            checker = CheckerProcess(max_in_flight=16)
            checker.start()
            changed = asyncio.Event()
            up, down = ("127.0.0.1", open_port), ("127.0.0.1", closed_port)
            passes = _sample("directservice_health_checks_total", kind="tcp", result="pass")
            fails = _sample("directservice_health_checks_total", kind="tcp", result="fail")
            checker.watch("ns/a", SPEC, {up: False, down: False}, changed.set)
            assert checker.failing("ns/a") == frozenset()  # new targets start healthy
            await _until("the closed port failing", lambda: checker.failing("ns/a") == {down},
                         changed)  # fmt: skip
            await _until(
                "passes and failures counted here",
                lambda: (
                    _sample("directservice_health_checks_total", kind="tcp", result="pass") > passes
                    and _sample("directservice_health_checks_total", kind="tcp", result="fail")
                    > fails
                ),
                changed,
            )
            checker.watch("ns/a", SPEC, {up: False}, changed.set)  # the failing one removed
            assert checker.failing("ns/a") == frozenset()
            await checker.close()
            assert _sample("directservice_health_checks_in_flight") == 0

    _run(body)


def test_the_child_starts_with_the_first_watch() -> None:
    async def body() -> None:
        async with _ports() as (open_port, _):
            checker = CheckerProcess(max_in_flight=16)
            checker.start()
            assert checker._child is None, "nothing to check: no child"
            checker.unwatch("ns/a")  # unwatching what was never watched starts nothing
            assert checker._child is None
            checker.watch("ns/a", SPEC, {("127.0.0.1", open_port): False}, lambda: None)
            child = checker._child
            assert child is not None and child.proc.poll() is None
            await checker.close()
            assert child.proc.returncode == 0

    _run(body)


def test_a_killed_child_is_restarted_and_told_every_watch_again() -> None:
    async def body() -> None:
        async with _ports() as (_, closed_port):
            down = ("127.0.0.1", closed_port)
            checker, changed = await _failing(down, "ns/a")
            child = checker._child
            assert child is not None
            restarts = _sample("directservice_health_checker_restarts_total")
            os.kill(child.proc.pid, signal.SIGKILL)
            # Its verdicts went with it: healthy until the new child has checked again.
            await _until("the verdict dropped", lambda: checker.failing("ns/a") == frozenset(),
                         changed)  # fmt: skip
            assert _sample("directservice_health_checker_restarts_total") == restarts + 1
            await _until("failing again, from the new child",
                         lambda: checker.failing("ns/a") == {down}, changed)  # fmt: skip
            assert checker._child is not None and checker._child is not child
            assert child.proc.poll() is not None  # reaped
            await checker.close()
            with pytest.raises(RuntimeError):
                checker.watch("ns/a", SPEC, {down: False}, changed.set)

    _run(body)


def test_close_stops_the_child_and_unwatched_keys_report_nothing() -> None:
    async def body() -> None:
        async with _ports() as (_, closed_port):
            down = ("127.0.0.1", closed_port)
            checker, _ = await _failing(down, "ns/a", "ns/b")
            checker.unwatch("ns/b")
            assert checker.failing("ns/b") == frozenset()
            child = checker._child
            assert child is not None
            await checker.close()
            assert child.proc.returncode == 0  # stopped when asked, not killed

    _run(body)
