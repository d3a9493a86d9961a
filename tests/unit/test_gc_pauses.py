"""Garbage-collector passes are timed into directservice_gc_pause_seconds, by generation."""

from __future__ import annotations

import gc

import pytest

from directservice.controller.looplag import GcPauses
from directservice.obs import metrics

pytestmark = pytest.mark.unit


def _passes(generation: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "directservice_gc_pause_seconds_count", {"generation": generation}
    )
    return value or 0.0


def test_a_full_collection_is_timed_while_installed_and_not_after() -> None:
    pauses = GcPauses()
    before = _passes("2")
    pauses.install()
    pauses.install()  # once, however often installed
    try:
        gc.collect()
    finally:
        pauses.uninstall()
    assert _passes("2") == before + 1
    gc.collect()
    assert _passes("2") == before + 1
