"""Health scenario, part 2: how long a dead instance stays in DNS, and how long it takes back.

Several DirectServices (static provider, three instances each, every instance a
`devenv.instance` server on its own network-lab host) with a TCP health check, served by the
real operator process and a real CoreDNS. One worker thread per DirectService runs its
share of the kills: at a random phase of the check interval it SIGKILLs one instance, polls
CoreDNS until the A records are exactly the two others (removal), restarts the instance and
polls until all three are back (return, counted from the moment it listens again). Slice
writes come from the operator's own counter, directservice_api_writes_total.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.cluster import create_all, ensure_namespace
from bench.env import Env, Settings
from bench.stats import Summary, parse_samples
from devenv.coredns import CoreDNS
from devenv.dnsquery import a_records
from devenv.netlab import InstanceServer, NetLab
from devenv.operatorproc import OperatorProcess
from directservice.api.names import GROUP
from directservice.api.names import VERSION as API_VERSION

NAMESPACE = "bench-health-kill"
MODEL, PORT = "scorer", 8000
PER_SERVICE = 3  # one of three failing is below the default panic share (50 %)
TTL = 1  # CoreDNS's TTL, part of both bounds
INTERVAL, TIMEOUT, UNHEALTHY, HEALTHY = 1.0, 0.5, 2, 2
CHECK: dict[str, Any] = {"type": "tcp", "interval": "1s", "timeout": "500ms"}
CHECK |= {"unhealthyThreshold": UNHEALTHY, "healthyThreshold": HEALTHY}
REMOVAL_BOUND = UNHEALTHY * INTERVAL + TIMEOUT + TTL
RETURN_BOUND = HEALTHY * INTERVAL + TTL
DNS_STEP = 0.02  # s between two DNS polls of one worker
GIVE_UP = 20.0  # s: a removal or return not seen by then is counted as missed
WRITES = "directservice_api_writes_total"


@dataclass(frozen=True)
class KillResult:
    services: int
    kills: int
    ttl: int
    removal_bound: float
    return_bound: float
    removal_s: Summary
    return_s: Summary
    missed: int  # removals or returns not seen within GIVE_UP
    transitions: int  # removals and returns seen
    slice_writes: float
    all_writes: float
    other_writes: dict[str, int]  # writes of other kinds than EndpointSlice, "kind verb"
    removals_within_bound: int
    returns_within_bound: int

    @property
    def slice_writes_per_transition(self) -> float:
        return self.slice_writes / self.transitions if self.transitions else float("nan")

    @property
    def writes_per_transition(self) -> float:
        return self.all_writes / self.transitions if self.transitions else float("nan")


def dsvc_name(i: int) -> str:
    return f"kill-{i:02d}"


def fqdn(i: int) -> str:
    return f"{dsvc_name(i)}.{NAMESPACE}.svc.cluster.local."


def manifest(i: int, servers: Sequence[InstanceServer]) -> dict[str, Any]:
    listed = [{"ip": ip, "port": port, "weight": 100} for ip, port in (s.address for s in servers)]
    return {
        "apiVersion": f"{GROUP}/{API_VERSION}",
        "kind": "DirectService",
        "metadata": {"name": dsvc_name(i), "namespace": NAMESPACE},
        "spec": {
            "provider": {"static": {"instances": listed}},
            "pollInterval": "5s",
            "healthCheck": CHECK,
        },
    }


def api_writes(operator: OperatorProcess) -> Counter[str]:
    """The writes the operator counted since it started, by "kind verb"."""
    writes: Counter[str] = Counter()
    for labels, value in parse_samples(operator.metrics_text(), WRITES):
        writes[f"{labels.get('kind', '?')} {labels.get('verb', '?')}"] += int(float(value))
    return writes


def until_records(
    dns: CoreDNS, name: str, expected: set[str], since: float, give_up: float = GIVE_UP
) -> float:
    """Seconds from `since` (monotonic) until CoreDNS answers exactly `expected`; NaN if that
    takes more than `give_up`."""
    while True:
        if a_records(dns.address, name) == expected:
            return time.monotonic() - since
        if time.monotonic() - since > give_up:
            return float("nan")
        time.sleep(DNS_STEP)


def kill_rounds(
    dns: CoreDNS, i: int, servers: Sequence[InstanceServer], rounds: int, rng: random.Random
) -> list[tuple[float, float]]:
    """(removal, return) seconds of each kill of DirectService `i`, victims in turn."""
    everyone = {s.address[0] for s in servers}
    out: list[tuple[float, float]] = []
    for r in range(rounds):
        victim = servers[r % len(servers)]
        time.sleep(rng.uniform(0, INTERVAL))  # a random phase against the victim's checks
        victim.kill()
        removal = until_records(dns, fqdn(i), everyone - {victim.address[0]}, time.monotonic())
        victim.restart()
        back = until_records(dns, fqdn(i), everyone, time.monotonic())
        out.append((removal, back))
    return out


def _settle(operator: OperatorProcess, quiet: float = 2.0, timeout: float = 60.0) -> None:
    """Until the operator has written nothing for `quiet` seconds (first status writes)."""
    deadline = time.monotonic() + timeout
    last = api_writes(operator)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = api_writes(operator)
        if now == last:
            return
        last = now


def run_kills(env: Env, lab: NetLab, s: Settings) -> KillResult:
    services = 5 if s.quick else 10
    ensure_namespace(env.cp, NAMESPACE)
    hosts = [lab.add_host() for _ in range(services * PER_SERVICE)]
    try:
        servers = [h.serve(MODEL, PORT, identity=f"kill-{n}") for n, h in enumerate(hosts)]
        groups = [servers[i * PER_SERVICE : (i + 1) * PER_SERVICE] for i in range(services)]
        with CoreDNS(env.cp, ttl=TTL) as dns:
            operator = env.start_operator("health-kills", extra_args=["-n", NAMESPACE])
            create_all(env.api, [manifest(i, group) for i, group in enumerate(groups)])
            for i, group in enumerate(groups):
                everyone = {srv.address[0] for srv in group}
                if math.isnan(until_records(dns, fqdn(i), everyone, time.monotonic(), 120)):
                    raise RuntimeError(f"{fqdn(i)} never resolved to {sorted(everyone)}")
            _settle(operator)
            before = api_writes(operator)
            rounds = [s.health_kills // services + (i < s.health_kills % services)
                      for i in range(services)]  # fmt: skip
            with ThreadPoolExecutor(services) as pool:
                futures = [
                    pool.submit(kill_rounds, dns, i, group, rounds[i], random.Random(s.seed + i))
                    for i, group in enumerate(groups)
                ]
                outcomes = [pair for future in futures for pair in future.result()]
            writes = api_writes(operator) - before
            env.stop_operator()
    finally:
        for host in hosts:
            lab.remove_host(host)
    removals = [r for r, _ in outcomes if not math.isnan(r)]  # NaN: not seen
    returns = [b for _, b in outcomes if not math.isnan(b)]
    return KillResult(
        services=services,
        kills=len(outcomes),
        ttl=TTL,
        removal_bound=REMOVAL_BOUND,
        return_bound=RETURN_BOUND,
        removal_s=Summary.of(removals),
        return_s=Summary.of(returns),
        missed=2 * len(outcomes) - len(removals) - len(returns),
        transitions=len(removals) + len(returns),
        slice_writes=sum(n for k, n in writes.items() if k.startswith("EndpointSlice ")),
        all_writes=sum(writes.values()),
        other_writes={k: n for k, n in writes.items() if not k.startswith("EndpointSlice ")},
        removals_within_bound=sum(r <= REMOVAL_BOUND for r in removals),
        returns_within_bound=sum(b <= RETURN_BOUND for b in returns),
    )
