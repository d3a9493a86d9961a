"""Run the selected scenarios in order, on one control plane and one emulator process.

Order: the HTTP client micro-benchmark (nothing else running), the large service (alone),
then fleet sizes in ascending order, each with a fresh operator; at the main fleet size
also propagation, a restart and the profile; the health scenario last, on a network lab of
its own (bench.health).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from typing import Any

from bench import procfs
from bench.cluster import SliceWatcher
from bench.coalesce import run_coalesce
from bench.document import write
from bench.emulatorproc import EmulatorProcess
from bench.env import Env, Settings, fleet_eas, fleet_instances
from bench.fleet import FleetResult, restart_writes, run_level
from bench.handover import run_handover
from bench.health import run_health
from bench.httpbench import MODES
from bench.large import run_large
from bench.overload import run_overload
from bench.profiling import ProfiledOperator, analyse, load_records
from bench.propagation import run_propagation
from bench.report import Results
from bench.shards import run_shards, upstream_hosts
from devenv.controlplane import ControlPlane
from devenv.paths import REPO_ROOT, child_env
from devenv.tools import resolve


def fleet_sizes(s: Settings) -> list[int]:
    sizes: set[int] = set()
    if "curve" in s.scenarios:
        sizes.update(s.curve)
    if s.scenarios & {"fleet", "propagation", "profile"}:
        sizes.add(s.fleet_size)
    return sorted(sizes)


def machine_meta() -> dict[str, str]:
    meta = procfs.machine()
    meta["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta["python"] = platform.python_version()
    meta["revision"] = git_revision()
    for package in ("kopf", "aiohttp", "kubernetes"):
        try:
            meta[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            meta[package] = "?"
    return meta


def git_revision() -> str:
    """HEAD, plus "+ local changes" when the operator's sources differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "operator")
    return f"{head} + local changes" if dirty else head


def run(s: Settings) -> Results:
    res = Results(settings=s, meta=machine_meta())
    sizes = fleet_sizes(s)
    tools = resolve()
    version = subprocess.run(
        [str(tools.etcd), "--version"], capture_output=True, text=True, check=False
    )
    res.meta["etcd"] = (version.stdout.split("\n")[0].split(":")[-1] or "?").strip()
    print(f"bench: work dir {s.workdir}", flush=True)
    with ControlPlane(tools) as cp:
        res.meta["kube"] = str(cp.request("GET", "/version")["gitVersion"])
        most = max([
            *sizes,
            1000 if "http" in s.scenarios else 0,
            s.overload_services if "overload" in s.scenarios else 0,
            s.shard_services if "shards" in s.scenarios else 0,
        ])  # fmt: skip
        services = {fleet_eas(i): fleet_instances(i, s.instances) for i in range(most)}
        hosts = upstream_hosts(s.shard_upstreams)[1:] if "shards" in s.scenarios else ()
        emulator = EmulatorProcess(s.workdir, services, also_listen=hosts).start()
        api = cp.api_client()
        watcher = SliceWatcher(api).start()
        env = Env(cp, api, emulator, watcher, s.workdir)
        try:
            _scenarios(env, s, sizes, res)
        finally:
            env.stop_operator()
            watcher.stop()
            emulator.stop()
            api.close()  # type: ignore[no-untyped-call]
    return res


def _save(s: Settings, res: Results) -> None:
    """Write the report so far: a run cut short still leaves what it measured."""
    if s.output is not None:
        write(res, s.output)


def _scenarios(env: Env, s: Settings, sizes: list[int], res: Results) -> None:
    if "http" in s.scenarios:
        print("== discovery client: the operator's vs aiohttp and requests", flush=True)
        res.http = [run_http(env, s, mode) for mode in MODES]
        _save(s, res)
    if "large" in s.scenarios:
        print(f"== large service: {s.large_instances:,} instances", flush=True)
        res.large = run_large(env, s)
        _save(s, res)
    for n in sizes:
        print(f"== fleet: {n:,} services x {s.instances} instances", flush=True)
        result = run_level(env, n, s)
        res.levels.append(result)
        print(summary_line(result), flush=True)
        _save(s, res)
        if n != s.fleet_size:
            continue
        if "propagation" in s.scenarios:
            print(f"== propagation: {s.changes} changes with {n:,} services loaded", flush=True)
            res.propagation = run_propagation(env, n, s)
            p = res.propagation.delay_ms
            print(f"  overhead p50 {p.p50:.1f} ms, p99 {p.p99:.1f} ms (n={p.n})", flush=True)
            _save(s, res)
        if "profile" in s.scenarios:
            print(f"== profile: restart + {s.profile_seconds:g} s of steady state", flush=True)
            run_profile(env, n, s, res)
            _save(s, res)
    env.stop_operator()
    if "health" in s.scenarios:  # last: its operators watch only their own namespaces
        res.health = run_health(env, s, res.meta)
        _save(s, res)
    if "overload" in s.scenarios:
        print(f"== overload: {s.overload_services:,} services on one replica", flush=True)
        res.overload = run_overload(env, s)
        print(f"  {summary_line(res.overload.fleet)}", flush=True)
        _save(s, res)
    if "coalesce" in s.scenarios:
        print(f"== coalescing: {s.coalesce_services:,} services on {s.coalesce_upstreams}"
              " upstreams", flush=True)  # fmt: skip
        res.coalesce = run_coalesce(env, s)
        _save(s, res)
    if "shards" in s.scenarios:
        print(f"== shards: {s.shard_services:,} services on {s.shard_replicas} replicas, "
              f"{s.shard_count} shards", flush=True)  # fmt: skip
        res.shards = run_shards(env, s)
        _save(s, res)
    if "handover" in s.scenarios:
        print(f"== handover: {s.handover_rounds} leader kills, then as many SIGTERMs", flush=True)
        res.handover = run_handover(env, s)
        _save(s, res)


def summary_line(r: FleetResult) -> str:
    return (
        f"  {r.services:,} services: polls {r.polls_done:,}/{r.polls_scheduled:,.0f} "
        f"({r.polls_pct:.2f} %), lateness p50 {r.lateness_ms.p50:.0f} ms p99 "
        f"{r.lateness_ms.p99:.0f} ms, CPU {r.cpu_pct:.1f} % ({r.cpu_ms_per_poll:.3f} ms/poll), "
        f"RSS {r.rss_mib:.0f} MiB (peak {r.hwm_mib:.0f}), writes {r.operator_writes}"
    )


def run_profile(env: Env, n: int, s: Settings, res: Results) -> None:
    out = s.workdir / "profile"
    seconds, writes = restart_writes(env, n, s, profile_dir=out)
    res.restart = (seconds, writes)
    print(f"  restart: all polled within {seconds:.1f} s, {writes} writes", flush=True)
    env.wait_quiet(quiet=s.interval * 1.2, timeout=120)
    operator = env.operator
    assert isinstance(operator, ProfiledOperator)
    before = procfs.sample_tree(operator.pid)
    operator.begin()
    time.sleep(s.profile_seconds)
    after = procfs.sample_tree(operator.pid)
    operator.end()
    res.profile_cpu_pct = procfs.cpu_percent(before, after)
    res.profile = analyse(load_records(out))
    res.profile_text = (out / "profile.txt").read_text()
    census = json.loads((out / "census.json").read_text())
    census["rss_kib"] = before.rss_kib  # before sampling: the profiler's memory is not ours
    res.memory = census
    env.stop_operator()


def run_http(env: Env, s: Settings, mode: str) -> dict[str, Any]:
    env_for_child = child_env()
    argv = [
        sys.executable, "-m", "bench.httpbench", "--mode", mode,
        "--base", env.emulator.url, "--services", "1000",
        "--rate", f"{s.http_rate:g}", "--duration", f"{s.http_seconds:g}",
    ]  # fmt: skip
    before = procfs.sample(env.emulator.pid)
    done = subprocess.run(argv, capture_output=True, text=True, env=env_for_child, check=False)
    after = procfs.sample(env.emulator.pid)
    if done.returncode != 0:
        raise RuntimeError(f"httpbench {mode} exited {done.returncode}: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["emulator_cpu_pct"] = procfs.cpu_percent(before, after)
    print(
        f"  {mode}: {result['rate']:.0f} req/s, CPU {result['cpu_pct']:.1f} % "
        f"({result['cpu_us_per_req']:.0f} µs/req), p99 {result['latency_p99_ms']:.1f} ms",
        flush=True,
    )
    return result
