"""The operator under tracemalloc, for finding what grows: `python -m devenv.traced run ...`.

Takes the same arguments as `directservice run`. Every DIRECTSERVICE_TRACE_SECONDS (60) it
dumps a snapshot to DIRECTSERVICE_TRACE_DIR as snapshot-<pid>-<n>.bin, from a thread (the
dump holds the GIL for a moment; the operator's loop is not touched otherwise). Compare two
with `python -m devenv.traced compare OLD NEW`. Dev tooling only, never shipped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path

from directservice.cli import main as operator_main

FRAMES = 12


def _dump_every(directory: Path, seconds: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        time.sleep(seconds)
        n += 1
        tracemalloc.take_snapshot().dump(str(directory / f"snapshot-{os.getpid()}-{n:03d}.bin"))


def compare(old: str, new: str, top: int = 25) -> None:
    before, after = tracemalloc.Snapshot.load(old), tracemalloc.Snapshot.load(new)
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    before, after = before.filter_traces(ignore), after.filter_traces(ignore)
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"total growth {total / 1024:.1f} KiB in {sum(s.count_diff for s in stats)} blocks")
    for stat in stats[:top]:
        print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=FRAMES)[-2 * FRAMES :]:
            print("   ", line)


def main() -> int:
    if sys.argv[1:2] == ["compare"]:
        compare(sys.argv[2], sys.argv[3])
        return 0
    tracemalloc.start(FRAMES)
    directory = Path(os.environ.get("DIRECTSERVICE_TRACE_DIR", "traces"))
    seconds = float(os.environ.get("DIRECTSERVICE_TRACE_SECONDS", "60"))
    threading.Thread(target=_dump_every, args=(directory, seconds), daemon=True).start()
    return operator_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
