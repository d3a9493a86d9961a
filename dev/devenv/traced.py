"""The operator under tracemalloc, for finding what grows: `python -m devenv.traced run ...`.

Takes the same arguments as `directservice run`. Tracing starts DIRECTSERVICE_TRACE_START
seconds (90) after the process, past imports and start-up (traced, they take minutes); then
every DIRECTSERVICE_TRACE_SECONDS (60) a snapshot goes to DIRECTSERVICE_TRACE_DIR as
snapshot-<pid>-<n>.bin, from a thread (the dump holds the GIL for a moment). What grows
between two snapshots was allocated after tracing began and is still alive. Compare two
with `python -m devenv.traced compare OLD NEW`, or see what one holds, by the innermost frame
of the operator or a library it uses, with `python -m devenv.traced top SNAPSHOT`. Dev tooling
only, never shipped.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from directservice.cli import main as operator_main

FRAMES = 8
# Frames that say who holds an allocation (json, copy or asyncio only say how it was made).
HOLDERS = ("/directservice/", "/kopf/", "/kubernetes/", "/aiohttp/", "/prometheus_client/")


def _dump_every(directory: Path, start: float, seconds: float) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    time.sleep(start)
    tracemalloc.start(FRAMES)
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


def holder(traceback: tracemalloc.Traceback) -> str:
    """The innermost frame in HOLDERS, else the innermost frame: `path:line`."""
    frames = list(reversed(traceback))  # tracemalloc keeps the oldest frame first
    chosen = next((f for f in frames if any(h in f.filename for h in HOLDERS)), frames[0])
    name = chosen.filename.split("site-packages/")[-1].split("/operator/")[-1]
    return f"{name}:{chosen.lineno}"


def top(path: str, count: int = 25) -> None:
    snapshot = tracemalloc.Snapshot.load(path)
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    size: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in snapshot.statistics("traceback"):
        where = holder(stat.traceback)
        size[where] += stat.size
        blocks[where] += stat.count
    print(f"traced {sum(size.values()) / 2**20:.1f} MiB in {sum(blocks.values())} blocks")
    for where, held in size.most_common(count):
        print(f"{held / 2**20:8.2f} MiB {blocks[where]:8d} blocks  {where}")


def main() -> int:
    if sys.argv[1:2] == ["compare"]:
        compare(sys.argv[2], sys.argv[3])
        return 0
    if sys.argv[1:2] == ["top"]:
        top(sys.argv[2])
        return 0
    directory = Path(os.environ.get("DIRECTSERVICE_TRACE_DIR", "traces"))
    start = float(os.environ.get("DIRECTSERVICE_TRACE_START", "90"))
    seconds = float(os.environ.get("DIRECTSERVICE_TRACE_SECONDS", "60"))
    args = (directory, start, seconds)
    threading.Thread(target=_dump_every, args=args, daemon=True).start()
    return operator_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
