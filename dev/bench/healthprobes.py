"""Health scenario, part 1: what one check costs, against a network-lab host.

`run_cost` starts a host holding many addresses with one `bench.acceptor` on all of them,
then runs `python -m bench.healthprobes` in the root namespace, pinned to one core (the
acceptor has the other), so the child's CPU is the checks' and nothing else's. The child
measures, each in a closed loop over every address of the host:

- the operator's TCP probe (`bench.healthcost.measure`) and its HTTP probe;
- two baselines in the same run: a bare blocking connect-and-reset loop (the syscalls a
  check cannot avoid) and `asyncio.open_connection` under `asyncio.wait_for` (the obvious
  asyncio way, which the probe avoids);
- the real HealthChecker with the real probe at a fixed rate (`measure_scheduled`), and the
  same with an instant probe: what scheduling alone costs.

It prints one JSON object, which `run_cost` turns into a `CostResult`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import procfs
from bench.healthcost import ScheduledCost, measure, measure_scheduled
from devenv.netlab import Host, NetLab
from devenv.paths import child_env
from directservice.api.spec import HealthCheckSpec, ProbeKind
from directservice.core.health import EndpointId
from directservice.health.probe import http_check

TCP_PORT, HTTP_PORT = 9000, 9001
PROBE_TIMEOUT = 1.0
CONCURRENCY = 256
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class Method:
    """One closed loop of checks: `concurrency` in flight, round-robin over the targets."""

    name: str
    checks: int
    passed: int
    concurrency: int
    wall_seconds: float
    cpu_seconds: float
    kernel_share: float  # system time ÷ CPU time, warm-up included

    @property
    def cpu_us_per_check(self) -> float:
        return 1e6 * self.cpu_seconds / self.checks if self.checks else float("nan")

    @property
    def checks_per_second(self) -> float:
        """Achieved on the one core the loop had."""
        return self.checks / self.wall_seconds if self.wall_seconds else float("nan")

    @property
    def checks_per_cpu_second(self) -> float:
        """What a core busy with nothing else would sustain."""
        return self.checks / self.cpu_seconds if self.cpu_seconds else float("nan")


@dataclass(frozen=True)
class CostResult:
    addresses: int
    methods: tuple[Method, ...]
    checker: ScheduledCost
    scheduling_only: ScheduledCost
    server_cpu_us_per_connection: float  # the acceptor, over the whole child run

    def method(self, name: str) -> Method | None:
        return next((m for m in self.methods if m.name == name), None)


# -- the child: loops on one core ------------------------------------------------------------


def _times() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


def _kernel_share(before: tuple[float, float], after: tuple[float, float]) -> float:
    user, system = after[0] - before[0], after[1] - before[1]
    return system / (user + system) if user + system > 0 else float("nan")


async def _closed_loop(
    name: str,
    checks: int,
    targets: list[EndpointId],
    check: Callable[[str, int], Awaitable[bool]],
    concurrency: int = CONCURRENCY,
) -> Method:
    """The same loop as bench.healthcost's, for any check: warm each target up once, then
    `concurrency` workers take the next target until `checks` were issued."""
    times = _times()
    for ip, port in targets:
        await check(ip, port)
    issued = passed = 0

    async def worker() -> None:
        nonlocal issued, passed
        while issued < checks:
            ip, port = targets[issued % len(targets)]
            issued += 1
            ok = await check(ip, port)  # awaited first: `passed += await` would lose counts
            passed += ok

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Method(
        name, issued, passed, concurrency, time.perf_counter() - wall,
        time.process_time() - cpu, _kernel_share(times, _times()),
    )  # fmt: skip


async def _http_probe(ip: str, port: int) -> bool:
    spec = HealthCheckSpec(kind=ProbeKind.HTTP, path="/healthz", timeout=PROBE_TIMEOUT)
    return (await http_check(ip, port, spec, tls=False)).ok


async def _open_connection(ip: str, port: int) -> bool:
    try:
        connect = asyncio.open_connection(ip, port)
        _, writer = await asyncio.wait_for(connect, PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _bare_loop(checks: int, targets: list[EndpointId]) -> Method:
    """Blocking connect, then close with a reset, one after the other: socket, setsockopt,
    connect, close and the kernel's handshake, with as little Python as it gets."""
    times = _times()
    passed = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for n in range(checks):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect(targets[n % len(targets)])
            passed += 1
        except OSError:
            pass
        sock.close()
    return Method(
        "bare connect loop (blocking)", checks, passed, 1, time.perf_counter() - wall,
        time.process_time() - cpu, _kernel_share(times, _times()),
    )  # fmt: skip


def _probe_method(checks: int, targets: list[EndpointId]) -> Method:
    times = _times()
    cost = measure(checks, CONCURRENCY, targets, PROBE_TIMEOUT)
    return Method(
        "probe: tcp", cost.checks, cost.passed, cost.concurrency, cost.wall_seconds,
        cost.cpu_seconds, _kernel_share(times, _times()),
    )  # fmt: skip


def child(tcp: list[EndpointId], http: list[EndpointId], checks: int, scheduled: int,
          interval: float, duration: float) -> dict[str, Any]:  # fmt: skip
    methods = [_probe_method(checks, tcp), _bare_loop(checks, tcp)]
    methods.append(
        asyncio.run(_closed_loop("asyncio.open_connection", checks, tcp, _open_connection))
    )
    methods.append(asyncio.run(_closed_loop("probe: http", checks, http, _http_probe)))
    checker = measure_scheduled(scheduled, interval, duration, tcp)
    alone = measure_scheduled(scheduled, interval, duration, instant=True)
    return {
        "methods": [asdict(m) for m in methods],
        "checker": asdict(checker),
        "scheduling_only": asdict(alone),
        # Warm-up rounds included: three loops warm every target up, the checker its first
        # round; the acceptor's CPU is divided by all of them.
        "connections": sum(m.checks for m in methods) + 3 * len(tcp) + checker.checks + scheduled,
    }


def _endpoints(raw: Sequence[Sequence[Any]]) -> list[EndpointId]:
    return [(str(ip), int(port)) for ip, port in raw]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.healthprobes")
    parser.add_argument("--targets", type=Path, required=True, help='{"tcp": [...], "http": []}')
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--scheduled", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--cpu", type=int, default=0, help="the core to run on")
    args = parser.parse_args(argv)
    if args.cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {args.cpu})
    targets = json.loads(args.targets.read_text())
    tcp, http = _endpoints(targets["tcp"]), _endpoints(targets["http"])
    result = child(tcp, http, args.checks, args.scheduled, args.interval, args.duration)
    print(json.dumps(result))
    return 0


# -- the parent: the host, the acceptor and the child ----------------------------------------


def _make_room_for_whole_wide_block(lab: NetLab, addresses: int) -> None:
    """A host of more than half the lab's wide network gets all of it as its block, whose
    route would collide with the lab's `unreachable` route of the same prefix (EEXIST). Give
    that route a lower priority (a higher metric), so the host's route wins while the link is
    up and the unreachable route still catches its traffic while it is down. The lab's own
    clean-up removes it whatever its metric."""
    wide = lab.networks.wide
    if 32 - (addresses - 1).bit_length() > wide.prefixlen:
        return
    script = f"route del unreachable {wide}\nroute add unreachable {wide} metric 4096\n"
    subprocess.run(["ip", "-force", "-b", "-"], input=script, text=True, check=True,
                   capture_output=True)  # fmt: skip


def start_acceptor(
    lab: NetLab, addresses: int, http: bool, cpu: int | None
) -> tuple[Host, subprocess.Popen[str]]:
    """A new host of `addresses` addresses with a `bench.acceptor` listening on all of them;
    (host, acceptor process), once it says it is ready."""
    _make_room_for_whole_wide_block(lab, addresses)
    host = lab.add_host(addresses=addresses)
    argv = [sys.executable, "-m", "bench.acceptor", "--port", str(TCP_PORT)]
    argv += ["--http-port", str(HTTP_PORT)] if http else []
    argv += ["--cpu", str(cpu)] if cpu is not None else []
    proc = host.popen(argv, stdout=subprocess.PIPE, text=True, env=child_env())
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the acceptor in {host.name} did not start (exit {proc.poll()})")
    return host, proc


def run_cost(lab: NetLab, workdir: Path, quick: bool, addresses: int = 1000) -> CostResult:
    host, acceptor = start_acceptor(lab, addresses, http=True, cpu=1)
    try:
        targets = workdir / "health-targets.json"
        tcp = [(ip, TCP_PORT) for ip in host.ips]
        targets.write_text(json.dumps({"tcp": tcp, "http": [(ip, HTTP_PORT) for ip in host.ips]}))
        sizes = ["--checks", "5000", "--scheduled", "2000", "--duration", "5"] if quick else []
        argv = [sys.executable, "-m", "bench.healthprobes", "--targets", str(targets), *sizes]
        before = procfs.sample(acceptor.pid)
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), check=False)
        after = procfs.sample(acceptor.pid)
        if done.returncode != 0:
            raise RuntimeError(f"healthprobes exited {done.returncode}: {done.stderr[-2000:]}")
        raw = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        lab.remove_host(host)
    server_us = 1e6 * (after.cpu_seconds - before.cpu_seconds) / max(raw["connections"], 1)
    return CostResult(
        addresses=addresses,
        methods=tuple(Method(**m) for m in raw["methods"]),
        checker=ScheduledCost(**raw["checker"]),
        scheduling_only=ScheduledCost(**raw["scheduling_only"]),
        server_cpu_us_per_connection=server_us,
    )


if __name__ == "__main__":
    sys.exit(main())
