"""Run `directservice ARGS...` under a profiler that signals switch on and off.

    python -m bench.profiled --out DIR [--interval S] -- run --liveness ...

SIGUSR1 starts pyinstrument sampling the main thread (the event loop: kopf, every poll
loop, aiohttp); SIGUSR2 stops it and writes DIR/profile.pyisession and
DIR/profile{,-flat}.txt, then DIR/census.json: every live Python object counted by type.
Signal handlers run on the main thread between bytecodes, the thread pyinstrument must
start and stop on, so the profile covers exactly the window the bench chooses (steady
state, not start-up). tracemalloc is not used: tracing slows kopf's start-up by 10-20x.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType

from pyinstrument import Profiler

TOP_TYPES = 25


def census(limit: int = TOP_TYPES) -> dict[str, object]:
    """Live objects by type: those the collector tracks, plus the untracked objects they
    refer to directly (strings, numbers, atomic-valued dicts), each counted once. The
    operator freezes its heap (controller/heap.py), and frozen objects are invisible to
    gc.get_objects(): the census thaws them first (the operator freezes again within a
    minute)."""
    gc.unfreeze()
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    seen: set[int] = set()

    def add(obj: object) -> None:
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        counts[name] += 1
        sizes[name] += sys.getsizeof(obj)

    tracked = gc.get_objects()
    for obj in tracked:
        seen.add(id(obj))
        add(obj)
    for obj in tracked:
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not gc.is_tracked(ref):
                seen.add(id(ref))
                add(ref)
    return {
        "objects": sum(counts.values()),
        "bytes": sum(sizes.values()),
        "types": [
            {"type": name, "count": counts[name], "bytes": size}
            for name, size in sizes.most_common(limit)
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiled")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    args: list[str] = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    ns.out.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=ns.interval, async_mode="disabled")

    def start(signum: int, frame: FrameType | None) -> None:
        if not profiler.is_running:
            profiler.start(caller_frame=frame, target_description="directservice run")

    def stop(signum: int, frame: FrameType | None) -> None:
        if profiler.is_running:
            session = profiler.stop()
            session.save(ns.out / "profile.pyisession")
            text = profiler.output_text(unicode=False, color=False, show_all=False)
            (ns.out / "profile.txt").write_text(text)
            flat = profiler.output_text(show_all=True, flat=True, time="percent_of_total")
            (ns.out / "profile-flat.txt").write_text(flat)
            # The samples are many small objects: keep them out of the census.
            del session
            profiler.reset()  # type: ignore[no-untyped-call]
        (ns.out / "census.json").write_text(json.dumps(census(), indent=1))
        (ns.out / "done").write_text("ok")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from directservice.cli import main as cli_main  # noqa: PLC0415  (after the handlers)

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
