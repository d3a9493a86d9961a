"""Whether the operator is overloaded, from how late its polls start: pure.

A poll is late when its timer runs more than `late_after(interval)` after it was due: the
event loop had more to do than it could. That is a fact about the process, not about one
DirectService, so the verdict is one for the whole process, judged over windows of
`WINDOW` seconds of polls of every DirectService:

- a window is late when at least `LATE_SHARE` of its polls started late;
- a window is on time when fewer than `ON_TIME_SHARE` started even half that late;
- `LATE_WINDOWS` late windows in a row turn the verdict to overloaded, `ON_TIME_WINDOWS`
  on-time windows in a row turn it back, and any other window holds it and breaks both runs;
- a window with a poll made while first passes were still pending (a start-up sync, or a
  shard taken over) holds it and breaks both runs too. The polls of a sync's first hundreds
  of DirectServices start late while the rest sync: at 3,000 on 2 cores that lasted 69 s,
  more than LATE_WINDOWS, and the verdict turned on and off for the whole fleet, a status
  write and an Event each way per DirectService, just after the sync.

One verdict over thousands of polls is steady where a verdict per DirectService, each on a
few noisy samples, flapped under a steady overload (a status write and an Event per flap).
It turns at most once per `LATE_WINDOWS` or `ON_TIME_WINDOWS` windows, however flappy the
load, and each DirectService reports it (condition `Overloaded`) with its next poll.

The operator's lateness is not the discovery server's fault: it never counts as a failed
poll, it only stretches the polls (and the timeouts measure the socket, not the queue).
"""

from __future__ import annotations

from dataclasses import dataclass

WINDOW = 10.0  # s of polls judged together
LATE_SHARE = 0.05
ON_TIME_SHARE = 0.01
LATE_WINDOWS = 6  # a minute: a start-up over thousands of objects is no overload
ON_TIME_WINDOWS = 6
LATE_FLOOR = 1.0  # s: never "late" for less, whatever the interval


def late_after(interval: float) -> float:
    """How late a poll may start and still be on time: a fifth of its interval, at least
    LATE_FLOOR."""
    return max(LATE_FLOOR, interval / 5)


@dataclass(frozen=True, slots=True)
class Load:
    overloaded: bool | None = None  # None: no verdict yet (a new process keeps the status)
    window_start: float | None = None  # None: no poll seen yet
    polls: int = 0  # in the current window
    late: int = 0  # of them, late
    lateish: int = 0  # of them, more than half the bound late
    late_windows: int = 0  # late windows in a row
    on_time_windows: int = 0  # on-time windows in a row
    starting: bool = False  # the current window saw a poll while first passes were pending


NO_VERDICT = Load()


def record_poll(
    state: Load, now: float, lateness: float, interval: float, starting: bool = False
) -> Load:
    """The state after one more poll, started at `now`, `lateness` seconds after it was due
    (`starting`: while first passes were pending). A window closes with the first poll
    after its end; a time without polls is no window."""
    if state.window_start is None:
        state = Load(state.overloaded, window_start=now)
    elif now - state.window_start >= WINDOW:
        state = _close_window(state, now)
    bound = late_after(interval)
    return Load(
        state.overloaded,
        state.window_start,
        state.polls + 1,
        state.late + (lateness > bound),
        state.lateish + (lateness > bound / 2),
        state.late_windows,
        state.on_time_windows,
        state.starting or starting,
    )


def _close_window(state: Load, now: float) -> Load:
    overloaded, late_runs, on_time_runs = state.overloaded, 0, 0
    if state.starting:
        pass  # a start-up's lateness is no verdict: hold it, break both runs
    elif state.late >= LATE_SHARE * state.polls:
        late_runs = state.late_windows + 1
        if late_runs >= LATE_WINDOWS:
            overloaded = True
    elif state.lateish < ON_TIME_SHARE * state.polls:
        on_time_runs = state.on_time_windows + 1
        if on_time_runs >= ON_TIME_WINDOWS:
            overloaded = False
    return Load(overloaded, now, late_windows=late_runs, on_time_windows=on_time_runs)
