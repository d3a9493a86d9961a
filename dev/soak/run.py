"""One soak: control plane, emulator process and fleet as in the benchmark; then the chaos,
the restarts and the sampler for `minutes`, a quiet tail, and the checks."""

from __future__ import annotations

import datetime
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procfs
from bench.env import FLEET_NS, Env, Settings, fleet_dsvc, fleet_eas, fleet_instances
from bench.fleet import create_fleet, wait_synced
from devenv.controlplane import ControlPlane
from devenv.paths import REPO_ROOT
from devenv.tools import resolve
from directservice.api.spec import DEFAULT_DRAIN_SECONDS, DEFAULT_SHRINK_CONFIRMATIONS
from directservice.discovery.budget import BACKOFF_CAP_FACTOR
from soak.book import AnswerBook, BookView, Published, endpoints_of
from soak.chaos import EmulatorChaos, SabotageRecord
from soak.checker import Settle, check_all, settle_times
from soak.emulator import FaultingEmulator
from soak.oplog import failure_summary, read_logs, unprovoked
from soak.plan import PlanSettings, make_plan
from soak.report import SoakRun
from soak.restarts import OperatorSlot, Restarter
from soak.sampler import Sampler
from soak.watch import ReadySliceWatcher


@dataclass(frozen=True)
class SoakSettings:
    services: int
    minutes: float
    workdir: Path
    instances: int = 10
    interval: float = 5.0
    seed: int = 1
    restarts: int = 4
    faults_per_minute: int = 20
    changes_per_minute: int = 10
    sample_seconds: float = 5.0
    scrape_every: int = 3
    warmup: float = 120.0
    slack: float = 15.0
    self_test: bool = False

    def plan_settings(self) -> PlanSettings:
        return PlanSettings(
            services=self.services,
            instances=self.instances,
            seconds=self.minutes * 60.0,
            faults_per_minute=self.faults_per_minute,
            changes_per_minute=self.changes_per_minute,
            restarts=self.restarts,
            seed=self.seed,
            sabotage=self.self_test,
        )

    def settle(self) -> Settle:
        return settle_times(
            interval=self.interval,
            confirmations=DEFAULT_SHRINK_CONFIRMATIONS,
            drain_seconds=DEFAULT_DRAIN_SECONDS,
            backoff_cap_intervals=BACKOFF_CAP_FACTOR,
            delay_seconds=self.plan_settings().delay_seconds,
            slack=self.slack,
        )

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if k != "workdir"}
        out["settle_seconds"] = vars(self.settle())
        return out


def bench_settings(s: SoakSettings) -> Settings:
    """The benchmark's settings, as far as create_fleet and wait_synced read them."""
    return Settings(
        quick=False, scenarios=frozenset(), duration=0.0, fleet_size=s.services,
        curve=(s.services,), instances=s.instances, interval=s.interval, large_instances=0,
        changes=0, probe_interval=1.0, profile_seconds=0.0, http_rate=0.0, http_seconds=0.0,
        workdir=s.workdir, output=None, seed=s.seed,
    )  # fmt: skip


def machine_meta() -> dict[str, str]:
    meta = procfs.machine()
    meta["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    # Each operator process imports the sources as they are when it starts.
    dirty = git("status", "--porcelain", "--", "operator")
    meta["revision"] = (git("rev-parse", "--short", "HEAD") or "unknown") + (
        " + local changes" if dirty else ""
    )
    return meta


def _thread(name: str, target: Any, stop: threading.Event) -> threading.Thread:
    thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
    thread.start()
    return thread


def run(s: SoakSettings) -> SoakRun:
    meta = machine_meta()
    with ControlPlane(resolve()) as cp:
        fleet = {i: fleet_instances(i, s.instances) for i in range(s.services)}
        emulator = FaultingEmulator(s.workdir, {fleet_eas(i): v for i, v in fleet.items()})
        emulator.start()
        configured = time.time()
        api = cp.api_client()
        watcher = ReadySliceWatcher(api)
        watcher.start()
        env = Env(cp, api, emulator, watcher, s.workdir)
        stop = threading.Event()
        try:
            return _soak(s, env, emulator, watcher, fleet, configured, meta, stop)
        finally:
            stop.set()
            env.stop_operator()
            watcher.stop()
            emulator.stop()
            api.close()  # type: ignore[no-untyped-call]


def _soak(
    s: SoakSettings,
    env: Env,
    emulator: FaultingEmulator,
    watcher: ReadySliceWatcher,
    fleet: dict[int, list[dict[str, Any]]],
    configured: float,
    meta: dict[str, str],
    stop: threading.Event,
) -> SoakRun:
    book = AnswerBook()
    for i, instances in fleet.items():
        book.version(fleet_dsvc(i), 0.0, configured, endpoints_of(instances))
    created = create_fleet(env, s.services, bench_settings(s))
    print(f"soak: {created} DirectServices created; starting the operator", flush=True)
    slot = OperatorSlot(env)
    sampler = Sampler(env, slot, s.sample_seconds, s.scrape_every)
    started = time.monotonic()
    slot.start()
    sampling = _thread("sampler", sampler.run, stop)
    sync_seconds = wait_synced(env, s.services, bench_settings(s), started)
    origin = time.time()
    print(f"soak: synced in {sync_seconds:.1f} s; {s.minutes:g} min of chaos", flush=True)
    plan = make_plan(s.plan_settings())
    chaos = EmulatorChaos(env, emulator, watcher, book, plan, s.plan_settings(), origin, fleet)
    restarter = Restarter(
        env, slot, emulator, book, plan.restarts, origin, [fleet_eas(i) for i in fleet]
    )
    threads = [_thread("chaos", chaos.run, stop), _thread("restarts", restarter.run, stop)]
    settle = s.settle()
    _progress(s, origin, sampler, book, watcher, settle, threads)
    tail = settle.quiet + s.sample_seconds
    print(f"soak: chaos over; {tail:.0f} s of quiet before the final check", flush=True)
    time.sleep(tail)  # every fault was cleared and every answer stands: all must converge
    end = time.time()
    stop.set()
    sampling.join(timeout=30)
    view = book.view()
    timelines = watcher.timelines(FLEET_NS)
    names = [fleet_dsvc(i) for i in fleet]
    steps = int((end - origin) // s.sample_seconds)
    times = [origin + k * s.sample_seconds for k in range(1, steps + 1)]
    failures = operator_failures(s.workdir)
    return SoakRun(
        settings=s.to_json(),
        meta=meta,
        origin=origin,
        end=end,
        sync_seconds=sync_seconds,
        warmup=s.warmup,
        samples=sampler.snapshot(),
        restarts=restarter.records,
        loss=check_all(names, view, timelines, times, settle, failures),
        # Strict: after the quiet tail every service must publish its answer, failing or not.
        final=check_all(names, view, timelines, [end], settle),
        plan=plan,
        sabotage=chaos.sabotaged,
        sabotage_restored=_restored(chaos.sabotaged, view, timelines),
        emulator_status=emulator.answers_by_status(),
        watch={
            "events": watcher.mark(),
            "relists": watcher.relists,
            "last_error": None if watcher.error is None else repr(watcher.error),
        },
        errors=[*chaos.errors, *restarter.errors],
        poll_failures=failures,
        failure_summary=failure_summary(failures, view, origin),
        failure_window=settle.fault,
        unprovoked_failures=unprovoked(failures, view),
        sampler_errors=list(sampler.errors),
    )


def operator_failures(workdir: Path) -> dict[str, list[tuple[float, str]]]:
    """The failed polls every operator process logged so far, per fleet service."""
    return read_logs(sorted(workdir.glob("operator-*.log")), FLEET_NS)


def _restored(
    sabotage: SabotageRecord | None,
    book: BookView,
    timelines: Mapping[str, Sequence[Published]],
) -> float | None:
    """When the self-test's service published one of its answers again after the deletion."""
    if sabotage is None:
        return None
    answers = {v.endpoints for v in book.versions[sabotage.service]}
    states = timelines.get(sabotage.service, ())
    return next((p.at for p in states if p.at > sabotage.at and p.ready in answers), None)


def _progress(
    s: SoakSettings,
    origin: float,
    sampler: Sampler,
    book: AnswerBook,
    watcher: ReadySliceWatcher,
    settle: Settle,
    threads: list[threading.Thread],
) -> None:
    """A line a minute until the chaos is over: memory, descriptors, loss so far."""
    deadline = origin + s.minutes * 60.0
    while time.time() < deadline or any(t.is_alive() for t in threads):
        time.sleep(min(60.0, max(1.0, deadline - time.time())))
        now = time.time()
        last = next((x for x in reversed(sampler.snapshot()) if x.rss_kib is not None), None)
        names = [fleet_dsvc(i) for i in range(s.services)]
        timelines = watcher.timelines(FLEET_NS)
        failures = operator_failures(s.workdir)
        loss = check_all(names, book.view(), timelines, [now], settle, failures)
        rss = "-" if last is None else f"{(last.rss_kib or 0) / 1024:.0f} MiB"
        fds = "-" if last is None else str(last.fds)
        print(
            f"  t+{(now - origin) / 60:4.1f} min: RSS {rss}, fds {fds}, "
            f"loss so far {loss.lost}, late {len(loss.late)} "
            f"({loss.checks}/{s.services} settled now)",
            flush=True,
        )
