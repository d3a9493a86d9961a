"""What the soak records while it runs: the watch's timeline of ready sets per service, and
the book the chaos writes as it drives the emulator (here a stand-in that notes the calls)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest
from kubernetes.client import ApiClient

from bench.env import Env
from soak.book import AnswerBook
from soak.chaos import EmulatorChaos
from soak.emulator import FaultingEmulator
from soak.plan import Change, FaultSpan, Plan, PlanSettings
from soak.watch import ReadySliceWatcher, ready_event
from support import wait_for_count

pytestmark = pytest.mark.unit


def slice_obj(
    name: str, service: str, ready: Sequence[str], draining: Sequence[str] = ()
) -> dict[str, Any]:
    endpoints = [{"addresses": [ip], "conditions": {"ready": True}} for ip in ready]
    endpoints += [
        {"addresses": [ip], "conditions": {"ready": False, "terminating": True}} for ip in draining
    ]
    return {
        "metadata": {
            "namespace": "bench",
            "name": name,
            "labels": {"kubernetes.io/service-name": service},
        },
        "ports": [{"port": 8000}],
        "endpoints": endpoints,
    }


def test_the_timeline_has_one_entry_per_change_of_the_ready_set() -> None:
    watcher = ReadySliceWatcher(ApiClient())  # never started: events are fed by hand
    feed = [
        ("ADDED", slice_obj("a-1", "a", ["10.0.0.1", "10.0.0.2"])),
        ("MODIFIED", slice_obj("a-1", "a", ["10.0.0.1"], draining=["10.0.0.2"])),
        ("MODIFIED", slice_obj("a-1", "a", ["10.0.0.1"])),  # the drain ended: same ready set
        ("ADDED", slice_obj("a-2", "a", ["10.0.0.9"])),  # a second slice adds to the union
        ("ADDED", slice_obj("b-1", "b", ["10.0.1.1"])),
        ("DELETED", slice_obj("a-1", "a", ["10.0.0.1"])),
        ("DELETED", slice_obj("a-2", "a", ["10.0.0.9"])),
    ]
    for at, (kind, obj) in enumerate(feed, start=1):
        watcher._record(ready_event(kind, obj, float(at)))
    timelines = watcher.timelines("bench")
    assert [(p.at, sorted(p.ready)) for p in timelines["a"]] == [
        (1.0, ["10.0.0.1:8000", "10.0.0.2:8000"]),
        (2.0, ["10.0.0.1:8000"]),
        (4.0, ["10.0.0.1:8000", "10.0.0.9:8000"]),
        (6.0, ["10.0.0.9:8000"]),
        (7.0, []),  # every slice gone: nothing left to answer with
    ]
    assert [p.at for p in timelines["b"]] == [5.0]
    assert watcher.timelines("elsewhere") == {}


class RecordingEmulator:
    """Stands in for FaultingEmulator: notes each admin call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.next_id = 0

    def add_fault(self, fault: Mapping[str, Any]) -> int:
        self.next_id += 1
        self.calls.append(("add", (self.next_id, dict(fault))))
        return self.next_id

    def delete_fault(self, fault_id: int) -> None:
        self.calls.append(("delete", fault_id))

    def put_service(self, name: str, instances: Sequence[Mapping[str, Any]]) -> None:
        self.calls.append(("put", (name, [i["ip"] for i in instances])))


def test_the_chaos_drives_the_emulator_in_time_order_and_books_it() -> None:
    plan = Plan(
        faults=(
            FaultSpan(0.0, 2.0, 1, "delay"),
            FaultSpan(2.0, 3.0, 1, "empty"),  # starts as the first ends: cleared first
            FaultSpan(2.5, 50.0, 0, "status"),  # still active when the run stops
        ),
        changes=(Change(1.0, 0, add="10.0.0.11", remove=None),),
        restarts=(),
        sabotage=None,
    )
    settings = PlanSettings(
        services=2,
        instances=2,
        seconds=60.0,
        faults_per_minute=0,
        changes_per_minute=0,
        restarts=0,
        delay_seconds=7.0,
    )
    emulator = RecordingEmulator()
    book = AnswerBook()
    chaos = EmulatorChaos(
        env=cast(Env, None),
        emulator=cast(FaultingEmulator, emulator),
        watcher=cast(ReadySliceWatcher, None),
        book=book,
        plan=plan,
        settings=settings,
        origin=time.time() - 10.0,  # everything up to t=10 is due at once
        instances={0: [{"ip": "10.0.0.1", "port": 8000, "weight": 100}], 1: []},
    )
    stop = threading.Event()
    actions = chaos.actions()
    assert [a[0] for a in actions] == sorted(a[0] for a in actions)
    runner = threading.Thread(target=chaos.run, args=(stop,))
    runner.start()
    # Six calls are due at once; the seventh waits for t=50, which the stop cuts short.
    wait_for_count("due admin calls", lambda: len(emulator.calls), 6, timeout=10, step=0.01)
    stop.set()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert [kind for kind, _ in emulator.calls] == [
        "add",  # delay on 1 at 0
        "put",  # 0 gains .11 at 1
        "delete",  # delay cleared at 2 ...
        "add",  # ... before the empty fault is injected
        "add",  # status on 0 at 2.5
        "delete",  # empty cleared at 3
        "delete",  # status cleared when the run stopped
    ]
    assert emulator.calls[0][1][1] == {"mode": "delay", "service": "fleet_00001", "seconds": 7.0}
    assert emulator.calls[1][1] == ("fleet_00000", ["10.0.0.1", "10.0.0.11"])
    view = book.view()
    assert [v.endpoints for v in view.versions["fleet-00000"]] == [
        frozenset({"10.0.0.1:8000", "10.0.0.11:8000"})
    ]
    assert [w.linger for w in view.faults["fleet-00001"]] == [7.0, 0.0]
    assert all(w.cleared is not None for ws in view.faults.values() for w in ws)
    assert chaos.errors == []
