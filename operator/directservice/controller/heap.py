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
"""

from __future__ import annotations

import asyncio
import gc

FREEZE_EVERY = 60.0  # s
FULL_PASS_EVERY = 3600.0  # s


def freeze_survivors() -> None:
    gc.collect()  # frozen objects are not walked: this pass costs only what is new
    gc.freeze()


def full_pass() -> None:
    gc.unfreeze()
    gc.collect()
    gc.freeze()


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
