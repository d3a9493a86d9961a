"""devenv.traced: a snapshot's memory is charged to the innermost frame that says who holds it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from devenv.traced import holder, top

pytestmark = pytest.mark.unit

# Code that appears to run in a holder's file (the operator) and in a helper's (json).
HOLDER_SOURCE = "def keep(make):\n    return make()\n"
HELPER_SOURCE = "def make():\n    return [bytearray(64) for _ in range(200)]\n"


def _snapshot(through_holder: bool = True) -> tuple[tracemalloc.Snapshot, list[bytearray]]:
    holder_ns: dict[str, object] = {}
    helper_ns: dict[str, object] = {}
    exec(compile(HOLDER_SOURCE, "/src/operator/directservice/keeper.py", "exec"), holder_ns)
    exec(compile(HELPER_SOURCE, "/usr/lib/python3/json/helper.py", "exec"), helper_ns)
    make = helper_ns["make"]
    tracemalloc.start(8)
    try:
        kept = holder_ns["keep"](make) if through_holder else make()  # type: ignore[operator]
        return tracemalloc.take_snapshot(), kept
    finally:
        tracemalloc.stop()


def _helper_stats(snapshot: tracemalloc.Snapshot) -> list[tracemalloc.Statistic]:
    stats = snapshot.statistics("traceback")
    return [s for s in stats if any("helper.py" in f.filename for f in s.traceback)]


def test_charged_to_the_innermost_holder_not_the_helper_that_allocated() -> None:
    snapshot, kept = _snapshot()
    mine = _helper_stats(snapshot)
    assert sum(s.count for s in mine) >= len(kept)
    assert {holder(s.traceback) for s in mine} == {"directservice/keeper.py:2"}


def test_without_a_holder_the_innermost_frame_is_named() -> None:
    snapshot, kept = _snapshot(through_holder=False)
    mine = _helper_stats(snapshot)
    assert sum(s.count for s in mine) >= len(kept)
    assert {holder(s.traceback) for s in mine} == {"/usr/lib/python3/json/helper.py:2"}


def test_top_prints_the_largest_holder_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot, _ = _snapshot()
    path = tmp_path / "snapshot.bin"
    snapshot.dump(str(path))
    top(str(path), count=1)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("traced ")
    assert lines[1].endswith("directservice/keeper.py:2")
