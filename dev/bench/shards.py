"""Scenario: replicas split one fleet through shards.

`shard_services` DirectServices (6,000: 3,000 a replica) poll `shard_upstreams` discovery
hosts. The hosts are loopback addresses of the one emulator: a PAI-EAS DirectService's shard
is the hash of its host (its rate-budget key), so one host would put the whole fleet in one
shard. `shard_replicas` replicas elect over `shard_count` shard Leases. Past sync, once the
writes died down, a window measures each replica (the shards it holds, the DirectServices
it polled, named in the User-Agent of the emulator's log, its CPU, RSS and writes) and the
fleet as a whole (polls made against scheduled, DirectServices polled by two replicas).
"""

from __future__ import annotations

import math
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from bench import procfs
from bench.cluster import create_all, dsvc_manifest, ensure_namespace, healthy, list_dsvc
from bench.env import Env, Settings, fleet_eas, wait_for
from bench.markdown import table
from bench.stats import OPERATOR_RESOURCES, by_resource, parse_samples, write_delta
from devenv.operatorproc import OperatorProcess

NAMESPACE = "bench-shards"
HEADING = "## Sharding: replicas split the fleet"
LEASE = "directservice-operator-shard-{}"
WRITES = "directservice_api_writes_total"


def upstream_hosts(count: int) -> tuple[str, ...]:
    """The loopback addresses the emulator also serves on, one discovery host each."""
    return tuple(f"127.0.0.{i + 1}" for i in range(count))


@dataclass(frozen=True)
class ReplicaShare:
    name: str
    shards: tuple[int, ...]  # the shard Leases it held at the end of the window
    services: int  # DirectServices it polled in the window
    polls: int
    cpu_pct: float
    rss_mib: float
    writes: int  # its own count of writes in the window, Leases left out


@dataclass(frozen=True)
class ShardsResult:
    services: int
    shards: int
    upstreams: int
    interval: float
    window: float
    sync_seconds: float
    replicas: tuple[ReplicaShare, ...]
    doubled: int  # DirectServices polled by more than one replica in the window
    unpolled: int
    writes: dict[str, int]  # the API server's count of the operators' writes in the window

    @property
    def polls(self) -> int:
        return sum(r.polls for r in self.replicas)

    @property
    def polls_scheduled(self) -> float:
        return self.services * self.window / self.interval

    @property
    def polls_pct(self) -> float:
        return 100.0 * self.polls / self.polls_scheduled if self.polls_scheduled else 0.0

    @property
    def cpu_spread(self) -> float:
        """max ÷ min over replicas of CPU per DirectService polled: 1.0 is proportional."""
        per = [r.cpu_pct / r.services for r in self.replicas if r.services]
        return max(per) / min(per) if len(per) == len(self.replicas) and min(per) > 0 else math.inf


def caller(record: dict[str, Any]) -> str:
    """The replica named at the end of the User-Agent: `... (identity)`."""
    agent = str((record.get("headers") or {}).get("User-Agent", ""))
    return agent.rsplit("(", 1)[-1].rstrip(")") if "(" in agent else ""


def polls_by_caller(log: list[dict[str, Any]], names: set[str]) -> dict[str, Counter[str]]:
    """Per replica, its polls of each of `names` (emulator service names)."""
    out: dict[str, Counter[str]] = {}
    for record in log:
        service = str(record.get("service"))
        if service in names:
            out.setdefault(caller(record), Counter())[service] += 1
    return out


def own_writes(metrics_text: str) -> int:
    """A replica's writes from its own counter, Lease renewals left out."""
    samples = parse_samples(metrics_text, WRITES)
    return int(sum(value for labels, value in samples if labels.get("kind") != "Lease"))


def _holders(env: Env, shards: int) -> dict[int, str]:
    found: dict[int, str] = {}
    for i in range(shards):
        path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE.format(i)}"
        try:
            found[i] = str(env.cp.request("GET", path)["spec"].get("holderIdentity") or "")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            found[i] = ""
    return found


def _start(env: Env, s: Settings, names: list[str]) -> dict[str, OperatorProcess]:
    procs: dict[str, OperatorProcess] = {}
    for name in names:
        args = [
            "-n", NAMESPACE, "--leader-election", "--identity", name,
            "--lease-namespace", NAMESPACE, f"--shards={s.shard_count}",
            "--allowed-host=127.0.0.*",
        ]  # fmt: skip
        log = env.workdir / f"shards-{name}.log"
        procs[name] = OperatorProcess(env.cp.kubeconfig, log, extra_args=args).start(timeout=120)
    return procs


def run_shards(env: Env, s: Settings) -> ShardsResult:
    n, hosts = s.shard_services, upstream_hosts(s.shard_upstreams)
    env.stop_operator()
    ensure_namespace(env.cp, NAMESPACE)
    port = env.emulator.port
    interval = f"{s.interval:g}s"
    docs = [
        dsvc_manifest(
            f"sh-{i:05d}", NAMESPACE, f"http://{hosts[i % len(hosts)]}:{port}", fleet_eas(i),
            interval,
        )
        for i in range(n)
    ]  # fmt: skip
    create_all(env.api, docs)
    names = [f"replica-{i}" for i in range(s.shard_replicas)]
    env.emulator.reset()
    started = time.monotonic()
    procs = _start(env, s, names)
    try:
        return _measure(env, s, procs, started)
    finally:
        for proc in procs.values():
            proc.stop()


def _measure(
    env: Env, s: Settings, procs: dict[str, OperatorProcess], started: float
) -> ShardsResult:
    n = s.shard_services

    def synced() -> bool:
        try:
            held = _holders(env, s.shard_count).values()
            items = list_dsvc(env.api, NAMESPACE)
        except (OSError, urllib3.exceptions.HTTPError, ApiException) as exc:  # busy: again
            print(f"    (the list failed: {type(exc).__name__})", flush=True)
            return False
        return all(held) and sum(1 for d in items if healthy(d, s.instances)) >= n

    ok = wait_for(synced, timeout=120 + n * 0.15, step=5.0)
    sync_seconds = time.monotonic() - started if ok else math.nan
    print(f"  {n:,} on {len(procs)} replicas: synced after {sync_seconds:.1f} s", flush=True)
    env.wait_quiet(quiet=s.interval * 2.4, timeout=300)
    env.emulator.reset()
    before = {name: procfs.sample_tree(p.pid) for name, p in procs.items()}
    writes_before = {name: own_writes(p.metrics_text()) for name, p in procs.items()}
    requests_before = env.requests()
    opened = time.time()  # the emulator logs the unix time of each request
    time.sleep(s.duration)
    closed = time.time()
    after = {name: procfs.sample_tree(p.pid) for name, p in procs.items()}
    writes_after = {name: own_writes(p.metrics_text()) for name, p in procs.items()}
    requests_after = env.requests()
    services = {fleet_eas(i) for i in range(n)}
    in_window = [r for r in env.emulator.log() if opened <= float(r.get("time", 0)) < closed]
    polled = polls_by_caller(in_window, services)
    holders = _holders(env, s.shard_count)
    pollers = Counter(svc for counts in polled.values() for svc in counts)
    replicas = tuple(
        ReplicaShare(
            name=name,
            shards=tuple(i for i, who in sorted(holders.items()) if who == name),
            services=len(polled.get(name, {})),
            polls=sum(polled.get(name, Counter()).values()),
            cpu_pct=procfs.cpu_percent(before[name], after[name]),
            rss_mib=procfs.mib(after[name].rss_kib),
            writes=writes_after[name] - writes_before[name],
        )
        for name in procs
    )
    return ShardsResult(
        services=n,
        shards=s.shard_count,
        upstreams=s.shard_upstreams,
        interval=s.interval,
        window=closed - opened,
        sync_seconds=sync_seconds,
        replicas=replicas,
        doubled=sum(1 for c in pollers.values() if c > 1),
        unpolled=len(services - set(pollers)),
        writes=by_resource(write_delta(requests_before, requests_after, OPERATOR_RESOURCES)),
    )


def shards_section(r: ShardsResult) -> list[str]:
    setting = (
        f"{r.services:,} DirectServices x 10 instances at {r.interval:g} s on {r.upstreams} "
        f"discovery hosts, {len(r.replicas)} replicas over {r.shards} shard Leases, "
        f"{r.window:.0f} s window after sync ({r.sync_seconds:.1f} s) and quiet."
    )
    outcome = (
        f"Polls made: {r.polls:,} of {r.polls_scheduled:,.0f} ({r.polls_pct:.2f} %); "
        f"DirectServices polled by two replicas: {r.doubled}; unpolled: {r.unpolled}; "
        f"writes in the window (API server, Leases aside): {sum(r.writes.values())}."
    )
    head = ["replica", "shards held", "DirectServices polled", "polls", "CPU %",
            "CPU % per 1,000 polled", "RSS MiB", "own writes"]  # fmt: skip
    rows = [
        [rep.name, ", ".join(str(i) for i in rep.shards) or "none", f"{rep.services:,}",
         f"{rep.polls:,}", f"{rep.cpu_pct:.1f}",
         f"{1000.0 * rep.cpu_pct / rep.services if rep.services else math.nan:.1f}",
         f"{rep.rss_mib:.0f}", str(rep.writes)]
        for rep in r.replicas
    ]  # fmt: skip
    memory = (
        f"CPU per DirectService polled, highest ÷ lowest replica: {r.cpu_spread:.2f}. Every "
        "replica watches every DirectService of the namespace (its standby loops included), "
        "so RSS follows the whole fleet, not the shards held "
        "([scale model](scale-model.md#memory-the-designs-limit-at-this-scale))."
    )
    return [f"{setting} {outcome}", "", *table(head, rows), memory, ""]


def shards_targets(r: ShardsResult) -> list[tuple[str, str, str, bool]]:
    """(target, goal, measured, met) rows for the targets table."""
    tag = f"{r.services:,} services on {len(r.replicas)} replicas, {r.shards} shards"
    steady = sum(r.writes.values())
    return [
        (f"{tag}: polls made", "≥ 99 %", f"{r.polls_pct:.2f} %", r.polls_pct >= 99),
        (f"{tag}: DirectServices polled by two replicas", "0", str(r.doubled), r.doubled == 0),
        (f"{tag}: steady-state writes", "0", str(steady), steady == 0),
        (f"{tag}: CPU per DirectService polled, highest ÷ lowest replica", "≤ 1.5",
         f"{r.cpu_spread:.2f}", r.cpu_spread <= 1.5),
    ]  # fmt: skip
