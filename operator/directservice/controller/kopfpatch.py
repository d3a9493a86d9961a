"""Two patches of kopf: its start-up barrier without a wake-up of every waiter per object,
and watch events without managedFields.

**The barrier.** Before kopf runs any handler it waits until every indexed object has been
indexed once: one toggle per object in a set (`aiotoggles.ToggleSet`), and every worker
waits on the set's one condition. kopf 1.45 notifies all waiters each time a toggle is
added or dropped, though the set's verdict (all on?) changes only once, so a restart over N
indexed objects costs N x N wake-ups. With 3,000 DirectServices (6,000 Services and
EndpointSlices indexed) that kept the loop busy for minutes and no DirectService was polled
(docs/benchmarks.md).

This notifies only when the verdict changes, which is all a waiter waits for
(`wait_for(state)` waits for `is_on() == state`). A kopf without the attributes it relies on
is left as it is, with a warning.

**managedFields.** kopf keeps the last body of every object a daemon runs for, as the watch
delivered it. The server-side apply bookkeeping in `metadata.managedFields` is 10 of the 17
KiB a DirectService's body takes in Python (a dict per field every writer set), and neither
kopf nor this operator reads it. Each event's object loses it before kopf processes the
event.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import processing

log = logging.getLogger(__name__)

_PATCHED = "_directservice_notifies_on_change"
_STRIPS = "_directservice_drops_managed_fields"


def notify_on_change_only() -> bool:
    """Patch kopf's ToggleSet (once); False when this kopf does not look as expected."""
    cls = aiotoggles.ToggleSet
    if getattr(cls, _PATCHED, False):
        return True
    probe = cls(all)
    if not all(hasattr(probe, name) for name in ("_toggles", "_condition", "_fn")):
        log.warning("kopf's ToggleSet has changed: its start-up barrier is left unpatched")
        return False

    async def make_toggle(
        self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
    ) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            was = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != was:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.discard(toggle)
            if self.is_on() != was:
                self._condition.notify_all()

    async def drop_toggles(
        self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]
    ) -> None:
        async with self._condition:
            was = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != was:
                self._condition.notify_all()

    cls.make_toggle = make_toggle  # type: ignore[method-assign]
    cls.drop_toggle = drop_toggle  # type: ignore[method-assign]
    cls.drop_toggles = drop_toggles  # type: ignore[method-assign]
    setattr(cls, _PATCHED, True)
    return True


def drop_managed_fields() -> None:
    """Patch kopf's event processing (once): each event's object without managedFields.
    Call before kopf.operator(), which binds the processor as it starts."""
    original: Callable[..., Awaitable[Any]] = processing.process_resource_event
    if getattr(original, _STRIPS, False):
        return

    async def process_resource_event(*args: Any, raw_event: Any, **kwargs: Any) -> Any:
        body = raw_event.get("object") if isinstance(raw_event, dict) else None
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        return await original(*args, raw_event=raw_event, **kwargs)

    setattr(process_resource_event, _STRIPS, True)
    processing.process_resource_event = process_resource_event  # type: ignore[assignment]
