"""The mass-deletion guard: a big shrink is published only once it has been seen repeatedly.

A discovery source that answers 200 with a partial list (a cache warming up, one zone
missing, a bug) would otherwise take most instances out of DNS in one poll. So an answer
that removes more than maxShrinkPercent of the published endpoints is held until the same
answer (the same set of ip:port) has arrived in shrinkConfirmations consecutive successful
polls. Failed polls neither confirm nor reset a hold: they say nothing about the answer.
A different shrinking answer restarts the count, since it is not the one that was confirmed.

Usage, once per successful poll (the reconciler keeps the returned state):

    verdict = check_shrink(published_ids, answer_ids, policy, state, source_changed=...)
    state = verdict.state
    if verdict.apply: publish(answer) else: report("ShrinkHeld", verdict.message)

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from directservice.api.reasons import Reason
from directservice.core.model import Instance, PublishedSlice

EndpointId = tuple[str, int]  # (ip, port): what a DNS answer actually loses
SHRINK_HELD = Reason.SHRINK_HELD


@dataclass(frozen=True)
class ShrinkPolicy:
    max_percent: int = 50  # 100 switches the guard off
    confirmations: int = 3  # 1 applies every answer at once


@dataclass(frozen=True)
class GuardState:
    """The shrinking answer being confirmed, and how many consecutive polls returned it."""

    pending: frozenset[EndpointId] | None = None
    seen: int = 0


@dataclass(frozen=True)
class Verdict:
    apply: bool
    state: GuardState
    removed: int = 0
    published: int = 0
    seen: int = 0
    needed: int = 0

    @property
    def reason(self) -> Reason | None:
        return None if self.apply else SHRINK_HELD

    @property
    def message(self) -> str:
        if self.confirmed_shrink:  # the ShrinkApplied Event's text
            return (
                f"applied an answer that removes {self.removed} of {self.published} endpoints "
                f"after {self.seen} consecutive identical answers"
            )
        if self.apply:
            return ""
        return (
            f"answer would remove {self.removed} of {self.published} endpoints; "
            f"confirmed {self.seen}/{self.needed}"
        )

    @property
    def confirmed_shrink(self) -> bool:
        """True on the poll that finally applies a held shrink (worth an Event)."""
        return self.apply and self.needed > 0


def answer_ids(instances: Iterable[Instance]) -> frozenset[EndpointId]:
    return frozenset((inst.ip, inst.port) for inst in instances)


def published_ids(slices: Iterable[PublishedSlice]) -> frozenset[EndpointId]:
    """The endpoints currently published, but those draining (terminating: the answer has
    already dropped them); slices we cannot read count as empty."""
    return frozenset(
        (ip, slc.content.key.port)
        for slc in slices
        if slc.content is not None
        for ip, state in slc.content.endpoints
        if not state.terminating
    )


def check_shrink(
    published: Collection[EndpointId],
    answer: Collection[EndpointId],
    policy: ShrinkPolicy,
    state: GuardState = GuardState(),
    *,
    source_changed: bool = False,
) -> Verdict:
    """Apply or hold `answer` given what is `published`; see the module docstring.

    source_changed: spec.provider differs from the one that produced the published
    endpoints (the user pointed the DirectService elsewhere, or edited a static list). The
    guard protects against a source misbehaving, not against the user's own edit, so the
    first answer from the new source applies at once.
    """
    current = frozenset(published)
    proposed = frozenset(answer)
    removed = len(current - proposed)
    # Integer comparison: removed/published > max_percent/100, without float rounding.
    if source_changed or not current or removed * 100 <= policy.max_percent * len(current):
        return Verdict(apply=True, state=GuardState(), removed=removed, published=len(current))
    seen = state.seen + 1 if state.pending == proposed else 1
    if seen >= policy.confirmations:
        return Verdict(
            apply=True,
            state=GuardState(),
            removed=removed,
            published=len(current),
            seen=seen,
            needed=policy.confirmations,
        )
    return Verdict(
        apply=False,
        state=GuardState(pending=proposed, seen=seen),
        removed=removed,
        published=len(current),
        seen=seen,
        needed=policy.confirmations,
    )
