"""What the emulator was told to answer and when: per service the answer versions and the
fault windows, and the operator's outages (restarts). Written by the chaos threads while the
soak runs, read by the checker afterwards.

Every action is bracketed by two wall-clock times, before the admin call and after its
answer, because the emulator switched somewhere in between: the checker takes whichever
bound is conservative for the question it asks.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

Endpoints = frozenset[str]  # "ip:port" of the instances DNS should answer with (weight > 0)


@dataclass(frozen=True)
class Version:
    """One answer of a service: served from somewhere in [called, applied] on."""

    called: float
    applied: float
    endpoints: Endpoints


@dataclass(frozen=True)
class FaultWindow:
    """A fault on a service: possibly failing polls from `called` to `cleared` + `linger`
    (a delayed request still fails after the clear); None: never cleared."""

    called: float
    cleared: float | None
    linger: float = 0.0

    def overlaps(self, start: float, end: float) -> bool:
        last = float("inf") if self.cleared is None else self.cleared + self.linger
        return self.called <= end and last >= start


@dataclass(frozen=True)
class Outage:
    """An operator restart: from the signal until the new process had polled every service,
    or the soak gave up waiting for that (None: still waiting)."""

    began: float
    resynced: float | None

    def covers(self, at: float, grace: float) -> bool:
        end = float("inf") if self.resynced is None else self.resynced + grace
        return self.began <= at <= end


@dataclass(frozen=True)
class Published:
    """A service's ready endpoints as the slice watch saw them from `at` on."""

    at: float
    ready: Endpoints


@dataclass(frozen=True)
class BookView:
    """A consistent copy of the book for the checker."""

    versions: Mapping[str, tuple[Version, ...]]
    faults: Mapping[str, tuple[FaultWindow, ...]]
    outages: tuple[Outage, ...]


def endpoints_of(instances: Iterable[Mapping[str, object]]) -> Endpoints:
    """The endpoints an answer should publish as ready: those with a positive weight."""
    return frozenset(
        f"{i['ip']}:{i['port']}" for i in instances if float(str(i.get("weight", 100))) > 0
    )


class AnswerBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, list[Version]] = {}
        self._faults: dict[str, list[FaultWindow]] = {}
        self._outages: list[Outage] = []

    def version(self, service: str, called: float, applied: float, endpoints: Endpoints) -> None:
        with self._lock:
            self._versions.setdefault(service, []).append(Version(called, applied, endpoints))

    def fault_on(self, service: str, called: float, linger: float) -> int:
        """Note a fault being injected (before the call); returns its index for fault_off."""
        with self._lock:
            windows = self._faults.setdefault(service, [])
            windows.append(FaultWindow(called, None, linger))
            return len(windows) - 1

    def fault_off(self, service: str, index: int, cleared: float) -> None:
        """Note a fault cleared (after the call answered)."""
        with self._lock:
            windows = self._faults[service]
            windows[index] = dataclasses.replace(windows[index], cleared=cleared)

    def outage_began(self, began: float) -> int:
        with self._lock:
            self._outages.append(Outage(began, None))
            return len(self._outages) - 1

    def outage_ended(self, index: int, resynced: float) -> None:
        with self._lock:
            self._outages[index] = dataclasses.replace(self._outages[index], resynced=resynced)

    def view(self) -> BookView:
        with self._lock:
            return BookView(
                versions={k: tuple(v) for k, v in self._versions.items()},
                faults={k: tuple(v) for k, v in self._faults.items()},
                outages=tuple(self._outages),
            )
