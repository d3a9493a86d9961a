"""Scenario 3: one DirectService with 10,000 instances (100 slices of 100).

Time from apply to every slice present, then the slice writes of a poll that changes
nothing, of one replaced instance, of 10 % replaced at random and of a 10 % scale-out,
each next to what a rewrite-all strategy would have written.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import procfs
from bench.cluster import (
    SliceWatcher,
    create_all,
    delete_dsvc,
    dsvc_manifest,
    ensure_namespace,
)
from bench.env import LARGE_NS, Env, Settings, wait_for
from bench.stats import OPERATOR_RESOURCES, by_verb, naive_writes, write_delta

LARGE = "large"
LARGE_EAS = "large_eas"
PER_SLICE = 100
IDLE_SECONDS = 15.0  # the idle operator's CPU is measured over this long


@dataclass(frozen=True)
class Step:
    name: str
    slice_events: int  # watch events on the service's slices
    slice_writes: dict[str, int]  # endpointslices writes at the API server, by verb
    other_writes: dict[str, int]  # the rest of the operator's writes (status, events)
    slices_before: int
    slices_after: int
    naive: int
    visible_s: float | None  # change at the emulator → the bench saw all of it

    @property
    def writes(self) -> int:
        return sum(self.slice_writes.values())


@dataclass(frozen=True)
class LargeResult:
    instances: int
    slices: int
    response_kib: float
    apply_to_first_poll_s: float
    first_poll_to_all_s: float
    apply_to_all_s: float
    cpu_ms_per_unchanged_poll: float  # the idle operator's CPU taken out
    steps: list[Step]
    gross_cpu_ms_per_unchanged_poll: float = math.nan  # all the operator's CPU in the window
    idle_cores: float = math.nan  # the operator's CPU with no DirectService, in cores


def marginal_ms_per_poll(cpu_seconds: float, wall: float, polls: int, idle_cores: float) -> float:
    """CPU per poll, in ms, of what a window cost beyond the idle operator (its watches,
    timers, metrics and health child), which would otherwise be charged to a few polls."""
    beyond = cpu_seconds - idle_cores * wall
    if polls <= 0 or beyond < 0:  # below the idle figure: too small for this method to tell
        return math.nan
    return 1000.0 * beyond / polls


def _address(k: int, base: int = 200) -> str:
    return f"10.{base + k // 62500}.{(k // 250) % 250}.{k % 250 + 1}"


def _body(addresses: list[str]) -> list[dict[str, Any]]:
    return [{"ip": ip, "port": 8000, "weight": 100} for ip in addresses]


def _published(watcher: SliceWatcher) -> set[str]:
    return {a for addrs in watcher.slices_of(LARGE_NS, LARGE).values() for a in addrs}


def run_large(env: Env, s: Settings) -> LargeResult:
    rng = random.Random(s.seed)
    n = s.large_instances
    current = [_address(k) for k in range(n)]
    expected_slices = math.ceil(n / PER_SLICE)
    ensure_namespace(env.cp, LARGE_NS)
    env.emulator.put_service(LARGE_EAS, _body(current))
    operator = env.start_operator("large")
    time.sleep(IDLE_SECONDS)  # its start-up (first lists, the health child) is not idle
    idle_before = procfs.sample_tree(operator.pid)
    time.sleep(IDLE_SECONDS)  # no DirectService yet: what the operator costs by itself
    idle_after = procfs.sample_tree(operator.pid)
    idle_cores = (idle_after.cpu_seconds - idle_before.cpu_seconds) / (
        idle_after.wall - idle_before.wall
    )
    env.emulator.reset()

    applied = time.time()
    create_all(
        env.api, [dsvc_manifest(LARGE, LARGE_NS, env.emulator.url, LARGE_EAS, f"{s.interval:g}s")]
    )
    want = set(current)

    def complete(w: SliceWatcher) -> bool:
        return len(w.slices_of(LARGE_NS, LARGE)) == expected_slices and _published(w) == want

    all_at = env.watcher.wait_state(complete, timeout=300)
    if all_at is None:
        raise RuntimeError("the large service was never fully published")
    first_poll = min(float(r["time"]) for r in env.emulator.log(LARGE_EAS))
    env.wait_quiet(quiet=s.interval * 1.2, timeout=120)

    steps: list[Step] = []
    cpu_before = procfs.sample_tree(env.operator.pid) if env.operator else None
    polls_before = env.emulator.polls_of(LARGE_EAS)
    steps.append(_step(env, "no change (3 polls)", None, polls=3))
    polls = env.emulator.polls_of(LARGE_EAS) - polls_before
    cpu_after = procfs.sample_tree(env.operator.pid) if env.operator else None
    gross_ms = cpu_ms = math.nan
    if cpu_before and cpu_after and polls:
        spent, wall = (
            cpu_after.cpu_seconds - cpu_before.cpu_seconds,
            cpu_after.wall - cpu_before.wall,
        )
        gross_ms = marginal_ms_per_poll(spent, wall, polls, 0.0)
        cpu_ms = marginal_ms_per_poll(spent, wall, polls, idle_cores)

    fresh = iter(range(10**6))
    one = list(current)
    one[rng.randrange(n)] = _address(next(fresh), base=201)
    steps.append(_step(env, "1 instance replaced", one))
    tenth = list(one)
    for index in rng.sample(range(n), n // 10):
        tenth[index] = _address(next(fresh), base=201)
    steps.append(_step(env, "10% replaced (random)", tenth))
    grown = tenth + [_address(next(fresh), base=201) for _ in range(n // 10)]
    steps.append(_step(env, "10% added (scale-out)", grown))

    delete_dsvc(env.api, LARGE_NS, LARGE)
    wait_for(lambda: not env.watcher.slices_of(LARGE_NS, LARGE), 120, 0.5)
    env.emulator.delete_service(LARGE_EAS)
    env.stop_operator()
    return LargeResult(
        instances=n,
        slices=expected_slices,
        response_kib=len(json.dumps({"endpoints": {"items": _body(current)}})) / 1024,
        apply_to_first_poll_s=first_poll - applied,
        first_poll_to_all_s=all_at - first_poll,
        apply_to_all_s=all_at - applied,
        cpu_ms_per_unchanged_poll=cpu_ms,
        steps=steps,
        gross_cpu_ms_per_unchanged_poll=gross_ms,
        idle_cores=idle_cores,
    )


def _step(env: Env, name: str, new: list[str] | None, polls: int = 2) -> Step:
    """Apply one change (or none) and count every write until `polls` further polls."""
    print(f"  large: {name}", flush=True)
    slices_before = len(env.watcher.slices_of(LARGE_NS, LARGE))
    mark = env.watcher.mark()
    requests_before = env.requests()
    visible: float | None = None
    if new is not None:
        changed = time.time()
        env.emulator.put_service(LARGE_EAS, _body(new))
        want = set(new)
        seen = env.watcher.wait_state(lambda w: _published(w) == want, timeout=60)
        visible = None if seen is None else seen - changed
    env.wait_polls(LARGE_EAS, polls, timeout=60)
    time.sleep(0.5)  # let the last watch events arrive
    delta = write_delta(requests_before, env.requests(), OPERATOR_RESOURCES)
    slices = Counter({k: v for k, v in delta.items() if k[1] == "endpointslices"})
    other = Counter({k: v for k, v in delta.items() if k[1] != "endpointslices"})
    slices_after = len(env.watcher.slices_of(LARGE_NS, LARGE))
    events = [e for e in env.watcher.since(mark) if e.namespace == LARGE_NS]
    return Step(
        name=name,
        slice_events=len(events),
        slice_writes=by_verb(slices),
        other_writes={f"{k[0]} {k[1]}{'/' + k[2] if k[2] else ''}": v for k, v in other.items()},
        slices_before=slices_before,
        slices_after=slices_after,
        naive=0 if new is None else naive_writes(slices_before, slices_after),
        visible_s=visible,
    )
