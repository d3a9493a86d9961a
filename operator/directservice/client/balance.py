"""Which instance gets the next call: smooth weighted round robin over positive weights.

Each pick adds every candidate's weight to its running score, takes the highest score (the
first in order on a tie) and takes the candidates' total weight off the winner. Over a
cycle of sum(weights) picks with integer weights each key is picked exactly its weight
times, and the picks of a heavy key are spread out instead of bunched (5:1:1 gives
a a b a c a a). A key of weight 0 is never picked.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Generic, TypeVar

from .errors import NoInstancesError
from .resolver import Instance

K = TypeVar("K", bound=Hashable)


class SmoothWeightedPicker(Generic[K]):
    """Not locked: the caller serialises `update` and `pick` (DirectClient holds a lock)."""

    def __init__(self, weights: Mapping[K, float] | None = None) -> None:
        self._weights: dict[K, float] = {}
        self._scores: dict[K, float] = {}
        if weights:
            self.update(weights)

    @property
    def weights(self) -> dict[K, float]:
        """The candidates and their weights (weight 0 left out), in pick order."""
        return dict(self._weights)

    def update(self, weights: Mapping[K, float]) -> None:
        """New candidates. Keys kept from before keep their score, so a refresh that
        changes nothing leaves the sequence of picks as it was."""
        positive = {key: float(w) for key, w in weights.items() if w > 0}
        if positive == self._weights:
            return
        self._weights = positive
        self._scores = {key: self._scores.get(key, 0.0) for key in positive}

    def pick(self, exclude: Collection[K] = ()) -> K:
        """The next key, skipping those in `exclude`; NoInstancesError if none is left."""
        best: K | None = None
        total = 0.0
        for key, weight in self._weights.items():
            if key in exclude:
                continue
            self._scores[key] += weight
            total += weight
            if best is None or self._scores[key] > self._scores[best]:
                best = key
        if best is None:
            raise NoInstancesError(
                f"no instance to pick: {len(self._weights)} with a positive weight, "
                f"{len(exclude)} excluded"
            )
        self._scores[best] -= total
        return best


def instance_weights(
    instances: Iterable[Instance], published: Mapping[str, float] | None
) -> dict[Instance, float]:
    """The weight of each instance. Without published weights every one weighs 1. With them
    an instance weighs what its IP has (0: drained); one whose IP has none gets the mean of
    the positive weights the others have, so it is neither starved nor favoured."""
    ordered = list(instances)
    if not published:
        return dict.fromkeys(ordered, 1.0)
    positive = [published[i.ip] for i in ordered if published.get(i.ip, 0) > 0]
    fallback = sum(positive) / len(positive) if positive else 1.0
    return {i: float(published.get(i.ip, fallback)) for i in ordered}
