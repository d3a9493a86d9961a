"""Keeps the long-lived heap out of the garbage collector's full passes.

With 3,000 DirectServices the process holds over a million objects that live as long as
it does: kopf's bodies and indexes, the published slices, the reconcilers. CPython runs a
full collection whenever a quarter as many objects again have reached its oldest
generation, and poll answers that live one interval get there; each full pass then walks
the whole heap, and the event loop stops for it (directservice_gc_pause_seconds). Frozen
objects are left out of every pass, so each minute the survivors are frozen, after a full
pass over what is not frozen yet: a minute's survivors, not the heap. That pass must reach
the oldest generation too. A cycle that grew old there and was then dropped (a sync's
garbage, an answer replaced after living an interval) would otherwise be frozen with the
live heap, and hold its memory until the hourly pass. Objects frozen and later dropped are
still freed by reference counting; only cycles among them wait for the hourly full pass.

After each pass, glibc is asked to hand back the free pages inside its heap
(`malloc_trim`). free() returns memory to the system only from the top of the heap, and a
start-up sync leaves tens of MiB free below live objects (answers, request bodies, TLS
buffers): without the trim the process keeps them for good (docs/benchmarks.md, "Peak RSS
at 1,000 services: where it went"). A C library without malloc_trim (musl) is left as it is.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

FREEZE_EVERY = 60.0  # s
FULL_PASS_EVERY = 3600.0  # s


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


_MALLOC_TRIM = _malloc_trim()


def return_free_memory() -> bool:
    """Free pages anywhere in the C heap go back to the system; False if it cannot."""
    return _MALLOC_TRIM is not None and _MALLOC_TRIM(0) == 1


def freeze_survivors() -> None:
    gc.collect()  # frozen objects are not walked: this pass costs only what is new
    gc.freeze()
    return_free_memory()


def full_pass() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return_free_memory()


async def keep_heap_frozen(
    every: float = FREEZE_EVERY, full_every: float = FULL_PASS_EVERY
) -> None:
    """Freeze the survivors every `every` seconds, and walk everything every `full_every`."""
    loop = asyncio.get_running_loop()
    last_full = loop.time()
    try:
        while True:
            await asyncio.sleep(every)
            if loop.time() - last_full >= full_every:
                full_pass()
                last_full = loop.time()
            else:
                freeze_survivors()
    finally:
        gc.unfreeze()
