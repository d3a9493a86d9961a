"""Hostile discovery sources cost only their own DirectService, never its neighbours.

- A body trickled at 1 byte/s ends at the request's cap (connect + 2 x read), not before
  (each byte resets the per-read timeout) and not after; a 50 MB body, announced or chunked,
  ends at the 4 MiB cap without the operator ever holding it (its peak RSS barely moves).
  Meanwhile three other DirectServices keep polling on schedule, within a poll of what
  their interval gives over the window.
- Discovery flapping between healthy and failing on every poll for a minute: no endpoint
  churn (slices byte for byte as they were), status writes within the allowance, and at
  most one Event per transition.
- A malformed stored object (wrong types, under a permissive CRD) reports InvalidSpec once
  and then costs nothing: no discovery call, no write, no daemon restart, while the others
  keep polling on schedule and publish a change at once. (Its re-check pace,
  INVALID_SPEC_RETRY, leaves no trace outside the process: tests/unit/test_flapping.py
  counts it in virtual time.)

A control plane and an operator of this module's own; the hostile sources are served by an
emulator of their own, so their cost to the emulator cannot slow the neighbours' answers.
"""

from __future__ import annotations

import copy
import itertools
import secrets
import time
import urllib.error
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.controlplane import DEFAULT_CRD_DIR, ControlPlane
from devenv.operatorproc import OperatorProcess
from directservice.controller.reporter import STATUS_BURST, STATUS_REFILL
from directservice.emulator.runner import EmulatorThread
from faultkit import INTERNAL_ERRORS, log_offset, log_since, metric_total
from support import (
    clear_faults_of,
    create,
    directservice,
    emulator_requests,
    events,
    events_with,
    eventually,
    get_dsvc,
    pai_eas,
    running,
    service,
    slices,
    wait_for_count,
    wait_health,
    wait_published,
    wait_requests,
)

pytestmark = pytest.mark.e2e

NAMESPACE = "discovery-faults"
NEIGHBOURS = 3
CONNECT, READ = 1.0, 2.0  # the hostile DirectService's timeouts: its cap is 5 s a request
BIG = 50 * 1024 * 1024
FLAP_POLLS = 66  # about a minute: a healthy poll waits 1 s, a failed one 0.8-1 s
CRD_FILE = DEFAULT_CRD_DIR / "directservice.io_directservices.yaml"


@pytest.fixture(scope="module")
def hostile() -> Iterator[EmulatorThread]:
    with EmulatorThread() as emu:
        yield emu


@pytest.fixture(scope="module")
def fault_operator(
    own_cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = Path(tmp_path_factory.mktemp("discovery-faults")) / "operator.log"
    proc = OperatorProcess(own_cluster.kubeconfig, log, extra_args=["-n", NAMESPACE])
    with running(proc, tail=60) as started:
        yield started


def healthy(cp: ControlPlane, emu: EmulatorThread, prefix: str, **spec: Any) -> tuple[str, str]:
    """A DirectService polling `emu` every second, published: (its name, its EAS service)."""
    name = f"{prefix}-{secrets.token_hex(3)}"
    eas = name.replace("-", "_")
    emu.set_instances(eas, [{"ip": "10.63.0.1", "port": 8000}])
    create(cp, directservice(NAMESPACE, name, pai_eas(emu.url, eas), drainSeconds=0, **spec))
    wait_published(cp, NAMESPACE, name, {("10.63.0.1", 8000)})
    wait_health(cp, NAMESPACE, name, "True", "DiscoverySucceeded")
    return name, eas


@pytest.fixture(scope="module")
def neighbours(
    own_cluster: ControlPlane, fault_operator: OperatorProcess, emulator: EmulatorThread
) -> list[tuple[str, str]]:
    """Healthy DirectServices whose pace the hostile ones must not disturb."""
    return [healthy(own_cluster, emulator, "neighbour") for _ in range(NEIGHBOURS)]


def on_schedule(emulator: EmulatorThread, neighbours: list[tuple[str, str]]) -> Callable[[], None]:
    """Call the result at the end of a window: each neighbour polled as often as a 1 s
    interval (jittered ±5 %) allows over it, within one poll."""
    start = time.monotonic()
    counts = {eas: emulator_requests(emulator, eas) for _, eas in neighbours}

    def check() -> None:
        window = time.monotonic() - start
        polled = [emulator_requests(emulator, eas) - n for eas, n in counts.items()]
        low, high = window / 1.05 - 1, window / 0.95 + 1
        assert all(low <= n <= high for n in polled), (window, polled)

    return check


def peak_rss(operator: OperatorProcess) -> int:
    """The operator's peak resident set so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{operator.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "trickled-1-byte-per-second": ("Timeout", {"mode": "trickle", "bytes_per_second": 1}),
    "50MB-announced": ("ResponseTooLarge", {"mode": "oversize", "bytes": BIG}),
    "50MB-chunked": ("ResponseTooLarge", {"mode": "oversize", "bytes": BIG, "chunked": True}),
}


@pytest.mark.parametrize("kind", list(BODIES))
def test_a_hostile_body_ends_within_its_bounds_and_neighbours_keep_their_pace(
    own_cluster: ControlPlane,
    fault_operator: OperatorProcess,
    emulator: EmulatorThread,
    hostile: EmulatorThread,
    neighbours: list[tuple[str, str]],
    kind: str,
) -> None:
    reason, fault = BODIES[kind]
    params = {key: value for key, value in fault.items() if key != "mode"}
    timeouts = {"connect": f"{CONNECT:g}s", "read": f"{READ:g}s"}
    name, eas = healthy(own_cluster, hostile, "hostile", timeouts=timeouts)
    published = slices(own_cluster, NAMESPACE, name)
    rss = peak_rss(fault_operator)
    check_neighbours = on_schedule(emulator, neighbours)
    armed = time.monotonic()
    hostile.add_fault(fault["mode"], service=eas, **params)  # until cleared: every poll meets it
    wait_health(own_cluster, NAMESPACE, name, "False", reason, timeout=20)
    took = time.monotonic() - armed
    # The next poll (within 1 s) meets the fault and fails at once, or at the 5 s cap.
    cap = CONNECT + 2 * READ
    low, high = (cap - 0.5, 1.05 + cap + 2.0) if reason == "Timeout" else (0.0, 1.05 + 2.0)
    assert low <= took <= high, took
    # Two more failed polls (backing off) make a window of several seconds.
    wait_requests(hostile, eas, 2, timeout=40)
    check_neighbours()
    assert peak_rss(fault_operator) - rss < 20 * 1024 * 1024  # never held the 50 MB
    assert slices(own_cluster, NAMESPACE, name) == published
    clear_faults_of(hostile, eas)
    wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded", timeout=30)


def test_flapping_every_poll_for_a_minute_costs_no_churn_and_bounded_writes(
    own_cluster: ControlPlane,
    fault_operator: OperatorProcess,
    hostile: EmulatorThread,
) -> None:
    name, eas = healthy(own_cluster, hostile, "flapping")
    published, svc = slices(own_cluster, NAMESPACE, name), service(own_cluster, NAMESPACE, name)
    # Each poll takes the oldest fault: a 503, then a normal answer (a zero delay), ...
    for _ in range(FLAP_POLLS // 2 + 1):
        hostile.add_fault("status", service=eas, count=1, status=503)
        hostile.add_fault("delay", service=eas, count=1, seconds=0)
    started = time.monotonic()
    wait_requests(hostile, eas, FLAP_POLLS, timeout=150)
    flapped = time.monotonic() - started
    clear_faults_of(hostile, eas)
    wait_health(own_cluster, NAMESPACE, name, "True", "DiscoverySucceeded", timeout=20)
    wait_requests(hostile, eas, 2)  # whatever the last flip posts is posted

    assert flapped >= 55, flapped
    assert slices(own_cluster, NAMESPACE, name) == published  # no endpoint churn
    assert service(own_cluster, NAMESPACE, name) == svc
    answers = [e["status"] for e in hostile.requests(eas)["log"]]
    downs = sum(1 for a, b in itertools.pairwise(answers) if a == 200 and b == 503)
    ups = sum(1 for a, b in itertools.pairwise(answers) if a == 503 and b == 200)
    assert downs >= FLAP_POLLS // 2 - 1
    by_reason = Counter((e["reason"], e["type"]) for e in events(own_cluster, NAMESPACE, name))
    assert set(by_reason) == {
        ("ServerError", "Warning"),
        ("DiscoverySucceeded", "Normal"),
        ("EndpointsPublished", "Normal"),
    }
    # Status writes draw on the allowance, and each Event is a turn since the status written
    # before: they alternate, from the first failure to the last success (the first success
    # is said by EndpointsPublished), so there are as many successes as failures, never more
    # of either than turns, and few enough a minute.
    failures = by_reason["ServerError", "Warning"]
    successes = by_reason["DiscoverySucceeded", "Normal"]
    assert successes == failures and failures <= downs and successes <= ups
    assert by_reason["EndpointsPublished", "Normal"] == 1
    allowed = STATUS_BURST + (time.monotonic() - started) / STATUS_REFILL + 1
    assert failures >= 1 and failures + successes <= allowed, (failures, successes, allowed)


def _created(cp: ControlPlane, body: dict[str, Any]) -> bool:
    try:
        create(cp, body)
    except urllib.error.HTTPError as err:
        if err.code != 422:
            raise
        return False
    return True


def _permissive(crd: dict[str, Any]) -> dict[str, Any]:
    """The CRD with spec left unchecked, as an older or looser schema would store it."""
    loose = copy.deepcopy(crd)
    for version in loose["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]["properties"]
        schema["spec"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return loose


def test_a_malformed_object_costs_nothing_and_its_neighbours_poll_on(
    own_cluster: ControlPlane,
    fault_operator: OperatorProcess,
    emulator: EmulatorThread,
    neighbours: list[tuple[str, str]],
) -> None:
    name = f"malformed-{secrets.token_hex(3)}"
    eas = name.replace("-", "_")
    emulator.set_instances(eas, [{"ip": "10.63.1.1", "port": 8000}])
    offset = log_offset(fault_operator)
    strict = yaml.safe_load(CRD_FILE.read_text())
    own_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(_permissive(strict)))
    try:
        body = directservice(NAMESPACE, name, pai_eas(emulator.url, eas))
        body["spec"]["timeouts"] = "fast"
        # The API server takes up a new schema a moment after the apply returns: until then
        # the strict one refuses the object (422).
        eventually("the permissive schema in effect", lambda: _created(own_cluster, body), 30)
    finally:
        own_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(strict))
    stored = wait_health(own_cluster, NAMESPACE, name, "False", "InvalidSpec")
    version = stored["metadata"]["resourceVersion"]

    check_neighbours = on_schedule(emulator, neighbours)
    changed, changed_eas = neighbours[0]
    emulator.set_instances(changed_eas, [{"ip": "10.63.0.1", "port": 8000},
                                         {"ip": "10.63.0.2", "port": 8000}])  # fmt: skip
    start = emulator_requests(emulator, changed_eas)
    wait_published(own_cluster, NAMESPACE, changed, {("10.63.0.1", 8000), ("10.63.0.2", 8000)})
    assert emulator_requests(emulator, changed_eas) <= start + 2  # published within a poll
    wait_for_count(
        "eight polls of a neighbour",
        lambda: emulator_requests(emulator, neighbours[1][1]),
        emulator_requests(emulator, neighbours[1][1]) + 8,
        30,
    )
    check_neighbours()

    assert emulator_requests(emulator, eas) == 0  # never polled with a spec it cannot read
    assert get_dsvc(own_cluster, NAMESPACE, name)["metadata"]["resourceVersion"] == version
    assert len(events_with(own_cluster, NAMESPACE, name, "InvalidSpec", "Warning")) == 1
    assert metric_total(fault_operator, INTERNAL_ERRORS) == 0
    log = log_since(fault_operator, offset)
    assert "Will retry" not in log and "failed with an exception" not in log
