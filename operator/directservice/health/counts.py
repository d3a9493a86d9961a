"""What the checker counts of its checks, and where the counts go.

In the process that serves /metrics they go straight to the Prometheus series (Exported).
In the checker's child process (process.py) they are kept as events (Batched) and sent to
the parent in batches, which replays them into its own series: the numbers a scrape sees
are the same wherever the checks ran.
"""

from __future__ import annotations

from typing import Protocol

from directservice.api.spec import ProbeKind
from directservice.obs import metrics

# One count, as a batch carries it: (what, probe kind, passed, seconds).
Event = tuple[int, str, bool, float]
STARTED, ENDED, JUDGED = 0, 1, 2  # seconds: the lateness, nothing, the duration


class CheckCounts(Protocol):
    def started(self, lateness: float) -> None: ...

    def ended(self) -> None:
        """A check ended, with a verdict or cancelled."""

    def judged(self, kind: ProbeKind, passed: bool, duration: float) -> None: ...


class Exported:
    """Into this process's Prometheus series."""

    def __init__(self) -> None:
        # Labelled children resolved once: labels() costs more than the increment itself.
        self._outcomes = {
            (kind.value, ok): metrics.HEALTH_CHECKS.labels(kind.value, "pass" if ok else "fail")
            for kind in ProbeKind
            for ok in (True, False)
        }
        self._durations = {
            kind.value: metrics.HEALTH_CHECK_DURATION.labels(kind.value) for kind in ProbeKind
        }
        self.in_flight = 0

    def started(self, lateness: float) -> None:
        metrics.HEALTH_CHECK_LATENESS.observe(max(0.0, lateness))
        metrics.HEALTH_CHECKS_IN_FLIGHT.inc()
        self.in_flight += 1

    def ended(self) -> None:
        metrics.HEALTH_CHECKS_IN_FLIGHT.dec()
        self.in_flight -= 1

    def judged(self, kind: ProbeKind, passed: bool, duration: float) -> None:
        self._judged(kind.value, passed, duration)

    def _judged(self, kind: str, passed: bool, duration: float) -> None:
        self._outcomes[(kind, passed)].inc()
        self._durations[kind].observe(duration)

    def replay(self, events: list[Event]) -> None:
        """A batch from the child, in order."""
        for what, kind, passed, seconds in events:
            if what == STARTED:
                self.started(seconds)
            elif what == ENDED:
                self.ended()
            else:
                self._judged(kind, passed, seconds)

    def forget_in_flight(self) -> None:
        """The child is gone, and its checks with it."""
        metrics.HEALTH_CHECKS_IN_FLIGHT.dec(self.in_flight)
        self.in_flight = 0


class Batched:
    """Kept until `take`, in the child."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def started(self, lateness: float) -> None:
        self.events.append((STARTED, "", False, lateness))

    def ended(self) -> None:
        self.events.append((ENDED, "", False, 0.0))

    def judged(self, kind: ProbeKind, passed: bool, duration: float) -> None:
        self.events.append((JUDGED, kind.value, passed, duration))

    def take(self) -> list[Event]:
        events, self.events = self.events, []
        return events
