"""The heap's survivors are frozen out of full collections; the periodic full pass thaws,
collects and freezes again, and a cycle frozen and dropped is freed by it."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest

from directservice.controller import heap
from directservice.controller.heap import freeze_survivors, full_pass

pytestmark = pytest.mark.unit


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_young_cycles_are_collected_before_the_freeze() -> None:
    try:
        ref = weakref.ref(Node())  # garbage at once, in a cycle
        freeze_survivors()
        assert ref() is None, "collected, not frozen"
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_cycle_dropped_in_the_oldest_generation_is_collected_before_the_freeze() -> None:
    try:
        node = Node()
        ref = weakref.ref(node)
        gc.collect()  # it survives a full pass: now in the oldest generation
        del node
        freeze_survivors()
        assert ref() is None, "collected, not frozen with the live heap"
    finally:
        gc.unfreeze()


def test_a_frozen_cycle_waits_for_the_full_pass() -> None:
    try:
        node = Node()
        ref = weakref.ref(node)
        freeze_survivors()
        del node
        gc.collect()
        assert ref() is not None, "frozen: no pass sees it"
        full_pass()
        assert ref() is None
        assert gc.get_freeze_count() > 0, "frozen again after the pass"
    finally:
        gc.unfreeze()


def test_the_task_freezes_each_period_and_thaws_when_cancelled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> tuple[int, int]:
        froze = asyncio.Event()

        def counted() -> None:
            freeze_survivors()
            froze.set()

        monkeypatch.setattr(heap, "freeze_survivors", counted)
        task = asyncio.ensure_future(heap.keep_heap_frozen(every=0.01, full_every=3600))
        await froze.wait()
        frozen = gc.get_freeze_count()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return frozen, gc.get_freeze_count()

    frozen, after = asyncio.run(scenario())
    assert frozen > 0 and after == 0


def rss_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


def test_the_freeze_hands_free_heap_pages_back() -> None:
    """80 MiB freed below blocks still alive: free() cannot shrink the heap past them, the
    trim after the freeze can."""
    assert heap._MALLOC_TRIM is not None, "glibc has malloc_trim"
    try:
        blocks = [bytes(4096) for _ in range(20_000)]  # malloc'd (over pymalloc's 512 B)
        kept = blocks[99::100]  # every 100th stays, so the heap's top stays in use
        del blocks
        before = rss_kib()
        freeze_survivors()
        dropped_mib = (before - rss_kib()) / 1024
        assert dropped_mib > 40, f"RSS fell by {dropped_mib:.1f} MiB only"
        assert len(kept) == 200
    finally:
        gc.unfreeze()
