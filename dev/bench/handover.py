"""The handover scenario: three replicas on one Lease, with the default timing.

- SIGKILL the leader N times: from the kill until another replica holds the Lease, and
  until a discovery change made at the kill is in the slices (bound: lease duration + one
  poll interval).
- SIGTERM the leader N times: from the signal until another replica holds the Lease (bound
  2 s: the leader frees the Lease before it exits).

The replicas watch only this scenario's namespace; the DirectService polls the emulator.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from kubernetes import client

from bench.cluster import ensure_namespace
from bench.env import Env, Settings
from bench.stats import Summary
from devenv.operatorproc import OperatorProcess

NAMESPACE = "bench-handover"
SERVICE = "handover"
EAS = "bench_handover"
DURATION, DEADLINE, RETRY = 15.0, 10.0, 1.0  # the operator's defaults
INTERVAL = 5.0  # the DirectService's poll interval
KILL_BOUND = DURATION + INTERVAL
TAKEOVER_BOUND = DURATION + 2 * RETRY  # seen within a retry period, taken at the next one
TERM_BOUND = 2.0
LEASE = "directservice-operator-shard-0"
STEP = 0.02  # s between two looks at the Lease or the slices


@dataclass(frozen=True)
class HandoverResult:
    date: str
    rounds: int
    kill_takeover_s: Summary  # SIGKILL -> another holder
    kill_published_s: Summary  # SIGKILL -> the change made at the kill is in the slices
    term_takeover_s: Summary  # SIGTERM -> another holder
    kills_within_bound: int
    terms_within_bound: int


class Group:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.core = client.CoreV1Api(env.api)
        self.discovery = client.DiscoveryV1Api(env.api)
        self.procs: dict[str, OperatorProcess] = {}
        self.generation = 0

    def start(self, name: str) -> None:
        args = ["-n", NAMESPACE, "--leader-election", "--identity", name]
        args += ["--lease-namespace", NAMESPACE]
        log = self.env.workdir / f"handover-{name}.log"
        self.procs[name] = OperatorProcess(self.env.cp.kubeconfig, log, extra_args=args)
        self.procs[name].start(timeout=120)

    def holder(self) -> str:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE}"
        try:
            return str(self.env.cp.request("GET", path)["spec"].get("holderIdentity") or "")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return ""
            raise

    def moved_from(self, leader: str) -> bool:
        return self.holder() not in ("", leader)

    def grow(self) -> str:
        """Add one instance (an addition passes the shrink guard at once); its IP."""
        self.generation += 1
        ips = [f"10.90.{g // 250}.{g % 250 + 1}" for g in range(self.generation + 1)]
        self.env.emulator.put_service(EAS, [{"ip": ip, "port": 8000} for ip in ips])
        return ips[-1]

    def published(self, ip: str) -> bool:
        found = self.discovery.list_namespaced_endpoint_slice(
            NAMESPACE, label_selector=f"kubernetes.io/service-name={SERVICE}"
        )
        return any(ip in e.addresses for s in found.items for e in (s.endpoints or []))

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()


def until(check: Callable[[], bool], since: float, give_up: float) -> float:
    """Seconds from `since` until `check()` holds; NaN after `give_up` seconds."""
    while not check():
        if time.monotonic() - since > give_up:
            return float("nan")
        time.sleep(STEP)
    return time.monotonic() - since


def run_handover(env: Env, s: Settings) -> HandoverResult:
    ensure_namespace(env.cp, NAMESPACE)
    group = Group(env)
    group.grow()
    env.cp.request(
        "POST",
        f"/apis/directservice.io/v1alpha1/namespaces/{NAMESPACE}/directservices",
        {
            "apiVersion": "directservice.io/v1alpha1",
            "kind": "DirectService",
            "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {
                "provider": {"paiEas": {"endpoint": env.emulator.url, "serviceName": EAS}},
                "pollInterval": f"{INTERVAL:g}s",
            },
        },
    )
    kills: list[float] = []
    published: list[float] = []
    terms: list[float] = []
    rounds = s.handover_rounds
    try:
        for name in ("replica-0", "replica-1", "replica-2"):
            group.start(name)
        for round_no in range(rounds):
            leader = _leader(group)
            ip = group.grow()
            proc = group.procs[leader]
            os.killpg(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            kills.append(until(partial(group.moved_from, leader), killed, 60))
            published.append(until(partial(group.published, ip), killed, 60))
            proc.stop()
            group.start(leader)
            print(f"  kill {round_no + 1}/{rounds}: takeover {kills[-1]:.2f} s, "
                  f"published {published[-1]:.2f} s", flush=True)  # fmt: skip
        for round_no in range(rounds):
            leader = _leader(group)
            proc = group.procs[leader]
            os.kill(proc.pid, signal.SIGTERM)
            sent = time.monotonic()
            terms.append(until(partial(group.moved_from, leader), sent, 60))
            proc.stop()
            group.start(leader)
            print(f"  term {round_no + 1}/{rounds}: takeover {terms[-1]:.2f} s", flush=True)
    finally:
        group.stop()
    return HandoverResult(
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        rounds=rounds,
        kill_takeover_s=Summary.of(kills),
        kill_published_s=Summary.of(published),
        term_takeover_s=Summary.of(terms),
        kills_within_bound=sum(p <= KILL_BOUND for p in published),
        terms_within_bound=sum(t <= TERM_BOUND for t in terms),
    )


def _leader(group: Group) -> str:
    """The holder, once it is one of ours (all replicas up, the Lease held)."""
    deadline = time.monotonic() + 60
    while (holder := group.holder()) not in group.procs:
        if time.monotonic() > deadline:
            raise RuntimeError("no replica took the Lease within 60 s")
        time.sleep(STEP)
    return holder


def handover_lines(h: HandoverResult) -> list[str]:
    def row(name: str, x: Summary, bound: float, within: int | None) -> str:
        inside = f"{within} / {x.n}" if within is not None else "-"
        return (
            f"| {name} | {x.n} | {x.p50:.2f} | {x.p90:.2f} | {x.p99:.2f} | {x.max:.2f} | "
            f"{bound:g} | {inside} |"
        )

    return [
        "## Leader handover",
        "",
        f"Measured {h.date}: three replicas on one Lease (lease duration {DURATION:g} s, renew "
        f"deadline {DEADLINE:g} s, retry period {RETRY:g} s: the defaults), one DirectService "
        f"polled every {INTERVAL:g} s; {h.rounds} SIGKILLs of the leader, then {h.rounds} "
        "SIGTERMs. The killed or stopped replica is started again after each round.",
        "",
        "| transition | n | p50 s | p90 s | p99 s | max s | bound s | within bound |",
        "|---|---|---|---|---|---|---|---|",
        row("SIGKILL → another replica holds the Lease", h.kill_takeover_s, TAKEOVER_BOUND, None),
        row("SIGKILL → a change made at the kill is published", h.kill_published_s, KILL_BOUND,
            h.kills_within_bound),
        row("SIGTERM → another replica holds the Lease", h.term_takeover_s, TERM_BOUND,
            h.terms_within_bound),
        "",
        "A SIGKILLed leader's Lease is taken over once a standby has seen it unchanged for a "
        "lease duration on its own clock (it notices within a retry period of the last "
        "renewal); a SIGTERMed leader stops serving, lets its passes in flight end and frees "
        "the Lease before it exits.",
        "",
    ]  # fmt: skip
