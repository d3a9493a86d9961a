"""What an active health check costs the operator: CPU per TCP check, on one core.

    python -m bench.healthcost [--checks 20000] [--concurrency 256] [--targets IP:PORT,...]
        [--scheduled 10000 --interval 5 --duration 20]

`measure` runs `checks` TCP probes (directservice.health.probe.tcp_check, as the checker
runs them), `concurrency` at a time, round-robin over `targets`, and reports process CPU
time (time.process_time) per check. `measure_scheduled` runs the HealthChecker itself over
`scheduled` targets at `interval` for `duration` seconds: the CPU share of one core it
takes, the check rate and how late checks start, then the same with a probe that answers
at once (what scheduling costs alone). Without targets both start an accept-and-close
server on loopback in a child process, so its CPU is not counted. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from directservice.api.spec import HealthCheckSpec
from directservice.core.health import EndpointId
from directservice.health.checker import HealthChecker
from directservice.health.probe import PASSED, Prober, ProbeResult, probe, tcp_check
from directservice.obs import metrics

# A child process: listen on `ports` loopback ports, accept and close every connection.
_SERVER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
ports = []
for _ in range(int(sys.argv[1])):
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    lst.setblocking(False)
    sel.register(lst, selectors.EVENT_READ)
    ports.append(str(lst.getsockname()[1]))
print(",".join(ports), flush=True)
while True:
    for key, _ in sel.select():
        while True:
            try:
                conn, _ = key.fileobj.accept()
            except BlockingIOError:
                break
            conn.close()
"""


@dataclass(frozen=True)
class ProbeCost:
    checks: int
    passed: int
    concurrency: int
    wall_seconds: float
    cpu_seconds: float

    @property
    def cpu_us_per_check(self) -> float:
        return self.cpu_seconds / self.checks * 1e6

    @property
    def checks_per_cpu_second(self) -> float:
        """Checks per second one fully busy core would sustain."""
        return self.checks / self.cpu_seconds


@dataclass(frozen=True)
class ScheduledCost:
    targets: int
    interval: float
    duration: float
    checks: int
    passed: int
    cpu_seconds: float
    late_over_10ms: float  # share of checks that started more than 10 ms late
    mean_lateness_ms: float

    @property
    def cpu_percent_of_a_core(self) -> float:
        return self.cpu_seconds / self.duration * 100


@contextmanager
def loopback_server(ports: int = 1) -> Iterator[list[EndpointId]]:
    """Accept-and-close listeners on 127.0.0.1 in a child process; yields their addresses."""
    child = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(ports)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().strip()
        yield [("127.0.0.1", int(port)) for port in line.split(",")]
    finally:
        child.kill()
        child.wait()


def measure(
    checks: int = 20_000,
    concurrency: int = 256,
    targets: Sequence[EndpointId] | None = None,
    timeout: float = 1.0,
) -> ProbeCost:
    """CPU per TCP check, `concurrency` checks at a time (closed loop), over `targets`."""
    if targets is None:
        with loopback_server() as started:
            return measure(checks, concurrency, started, timeout)
    return asyncio.run(_probe_loop(checks, concurrency, list(targets), timeout))


async def _probe_loop(
    checks: int, concurrency: int, targets: list[EndpointId], probe_timeout: float
) -> ProbeCost:
    passed = 0
    issued = 0
    for ip, port in targets:  # warm-up: each target answers once before timing starts
        await tcp_check(ip, port, probe_timeout)

    async def worker() -> None:
        nonlocal passed, issued
        while issued < checks:
            ip, port = targets[issued % len(targets)]
            issued += 1
            result = await tcp_check(ip, port, probe_timeout)
            passed += result.ok

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ProbeCost(
        checks=issued,
        passed=passed,
        concurrency=concurrency,
        wall_seconds=time.perf_counter() - wall,
        cpu_seconds=time.process_time() - cpu,
    )


def measure_scheduled(
    scheduled: int = 10_000,
    interval: float = 5.0,
    duration: float = 20.0,
    targets: Sequence[EndpointId] | None = None,
    *,
    instant: bool = False,
) -> ScheduledCost:
    """The HealthChecker over `scheduled` targets: services of up to 100 instances each,
    sharing the given addresses when there are fewer of them than targets. `instant`
    replaces the probe by an answer that is ready at once: what scheduling, verdicts and
    metrics cost on their own (no connection is made)."""
    if instant:
        fake = [("192.0.2.1", 1 + i) for i in range(100)]  # never contacted
        return asyncio.run(_scheduled(scheduled, interval, duration, fake, _instant))
    if targets is None:
        with loopback_server(ports=100) as started:
            return measure_scheduled(scheduled, interval, duration, started)
    return asyncio.run(_scheduled(scheduled, interval, duration, list(targets), probe))


def _instant(target: EndpointId, tls: bool, spec: HealthCheckSpec) -> Awaitable[ProbeResult]:
    answer: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
    answer.set_result(PASSED)
    return answer


def _lateness() -> tuple[float, float, float]:
    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    base = "directservice_health_check_lateness_seconds"
    return value(f"{base}_count"), value(f"{base}_sum"), value(f"{base}_bucket", le="0.01")


def _checks() -> tuple[float, float]:
    name = "directservice_health_checks_total"
    passed = metrics.REGISTRY.get_sample_value(name, {"kind": "tcp", "result": "pass"}) or 0.0
    failed = metrics.REGISTRY.get_sample_value(name, {"kind": "tcp", "result": "fail"}) or 0.0
    return passed, failed


async def _scheduled(
    scheduled: int, interval: float, duration: float, targets: list[EndpointId], prober: Prober
) -> ScheduledCost:
    checker = HealthChecker(prober)
    spec = HealthCheckSpec(interval=interval, timeout=1.0)
    per_service = min(100, len(targets))
    services = -(-scheduled // per_service)
    for service in range(services):
        chosen = targets[:per_service]
        targets = targets[per_service:] + chosen  # the next service starts further on
        checker.watch(f"bench/s{service}", spec, dict.fromkeys(chosen, False), lambda: None)
    await asyncio.sleep(interval)  # the first round: every target checked once, spread out
    (count0, sum0, fast0), (pass0, fail0) = _lateness(), _checks()
    cpu = time.process_time()
    await asyncio.sleep(duration)
    cpu_seconds = time.process_time() - cpu
    (count1, sum1, fast1), (pass1, fail1) = _lateness(), _checks()
    await checker.close()
    started = count1 - count0
    return ScheduledCost(
        targets=services * per_service,
        interval=interval,
        duration=duration,
        checks=int(pass1 + fail1 - pass0 - fail0),
        passed=int(pass1 - pass0),
        cpu_seconds=cpu_seconds,
        late_over_10ms=1 - (fast1 - fast0) / started if started else 0.0,
        mean_lateness_ms=(sum1 - sum0) / started * 1000 if started else 0.0,
    )


def _addresses(text: str) -> list[EndpointId]:
    out: list[EndpointId] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        host, _, port = part.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.healthcost", description=__doc__)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--targets", type=_addresses, help="IP:PORT,... (default: loopback)")
    parser.add_argument("--scheduled", type=int, default=10_000, help="0: skip the checker run")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)
    cost = measure(args.checks, args.concurrency, args.targets)
    report: dict[str, object] = {
        "probe": asdict(cost)
        | {
            "cpu_us_per_check": round(cost.cpu_us_per_check, 1),
            "checks_per_cpu_second": round(cost.checks_per_cpu_second),
        }
    }
    if args.scheduled:
        for name, instant in (("checker", False), ("scheduling_only", True)):
            run = measure_scheduled(
                args.scheduled, args.interval, args.duration, args.targets, instant=instant
            )
            report[name] = asdict(run) | {
                "cpu_percent_of_a_core": round(run.cpu_percent_of_a_core, 1),
                "cpu_us_per_check": round(run.cpu_seconds / max(run.checks, 1) * 1e6, 1),
            }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
