"""Whether a DirectService's polls run late because the operator is overloaded: pure.

A poll is late when its timer runs more than `late_after(interval)` after it was due: the
event loop had more to do than it could. `LATE_POLLS` late polls in a row turn the verdict
to overloaded, `ON_TIME_POLLS` polls in a row under half that bound turn it back, and in
between the verdict holds. So a loop that lags now and then changes nothing, and the
condition it drives (`Overloaded`) turns at most once per LATE_POLLS + ON_TIME_POLLS polls:
never a status write per poll, however flappy the load.

The operator's lateness is not the discovery server's fault: it never counts as a failed
poll, it only stretches the polls (and the timeouts measure the socket, not the queue).
"""

from __future__ import annotations

from dataclasses import dataclass

LATE_POLLS = 3
ON_TIME_POLLS = 6
LATE_FLOOR = 1.0  # s: never "late" for less, whatever the interval


def late_after(interval: float) -> float:
    """How late a poll may start and still be on time: a fifth of its interval, at least
    LATE_FLOOR."""
    return max(LATE_FLOOR, interval / 5)


@dataclass(frozen=True, slots=True)
class Lateness:
    overloaded: bool | None = None  # None: no verdict yet (a new process keeps the status)
    late: int = 0  # late polls in a row
    on_time: int = 0  # polls in a row well on time


NO_VERDICT = Lateness()


def record_lateness(state: Lateness, lateness: float, interval: float) -> Lateness:
    """The state after one more poll that started `lateness` seconds after it was due."""
    bound = late_after(interval)
    if lateness > bound:
        late = state.late + 1
        return Lateness(True if late >= LATE_POLLS else state.overloaded, late, 0)
    if lateness < bound / 2:
        on_time = state.on_time + 1
        return Lateness(False if on_time >= ON_TIME_POLLS else state.overloaded, 0, on_time)
    return Lateness(state.overloaded)  # in between: neither run grows
