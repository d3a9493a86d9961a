"""Discovery GETs at a fixed rate: the operator's HttpClient vs aiohttp and `requests`.

Each mode runs in its own process so its CPU time is its own:

    python -m bench.httpbench --mode operator --base URL --services 1000 \
        --rate 200 --duration 30

Modes: `operator` (directservice.discovery.httpclient.HttpClient, its own kept HTTP/1.1
connections, on one event loop as the operator runs it), `aiohttp-bare` (one aiohttp
ClientSession without cookie jar, plain get/read: the client it replaced, at its
leanest), `requests-executor` (an event loop handing blocking `requests` calls to a
thread pool, what the operator would do with requests), `requests-threads` (plain
threads, no event loop). Each request is a PAI-EAS upstreams GET plus json.loads of the answer.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import requests

from bench.stats import percentile
from directservice.discovery.httpclient import HttpClient

MODES = ("operator", "aiohttp-bare", "requests-executor", "requests-threads")
PATH = "/exported/apis/eas.alibaba-inc.k8s.io/v1/upstreams/"


class Recorder:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.late: list[float] = []
        self.errors = 0
        self._lock = threading.Lock()

    def done(self, due: float, started: float, finished: float, ok: bool) -> None:
        with self._lock:
            self.late.append(started - due)
            self.latency.append(finished - started)
            if not ok:
                self.errors += 1


async def _paced(
    urls: list[str], rate: float, total: int, one: Callable[[str, float], Coroutine[Any, Any, None]]
) -> None:
    """Start `total` requests at `rate` per second, each at its due time whatever the others
    do (an open loop), and wait for all of them."""
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.monotonic()
    for i in range(total):
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(one(urls[i % len(urls)], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))


async def _run_operator(urls: list[str], rate: float, total: int, rec: Recorder) -> None:
    http = HttpClient()

    async def one(url: str, due: float) -> None:
        started = time.monotonic()
        ok = True
        try:
            resp = await http.request(
                "GET", url, connect_timeout=2, read_timeout=5,
                headers={"Accept": "application/json"},
            )  # fmt: skip
            json.loads(resp.body)
        except Exception:
            ok = False
        rec.done(due, started, time.monotonic(), ok)

    await _paced(urls, rate, total, one)
    await http.close()


async def _run_bare(urls: list[str], rate: float, total: int, rec: Recorder) -> None:
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=12, sock_connect=2, sock_read=5)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, timeout=timeout
    ) as session:

        async def one(url: str, due: float) -> None:
            started = time.monotonic()
            ok = True
            try:
                async with session.get(url, headers={"Accept": "application/json"}) as resp:
                    json.loads(await resp.read())
            except Exception:
                ok = False
            rec.done(due, started, time.monotonic(), ok)

        await _paced(urls, rate, total, one)


def _requests_call(sessions: threading.local) -> Callable[[str, float, Recorder], None]:
    def call(url: str, due: float, rec: Recorder) -> None:
        session = getattr(sessions, "session", None)
        if session is None:
            session = sessions.session = requests.Session()
            session.trust_env = False
        started = time.monotonic()
        ok = True
        try:
            resp = session.get(url, headers={"Accept": "application/json"}, timeout=(2, 5))
            json.loads(resp.content)
        except Exception:
            ok = False
        rec.done(due, started, time.monotonic(), ok)

    return call


async def _run_executor(
    urls: list[str], rate: float, total: int, rec: Recorder, threads: int
) -> None:
    call = _requests_call(threading.local())
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[None]] = []
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.monotonic()
        for i in range(total):
            due = t0 + i / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            futures.append(loop.run_in_executor(pool, call, urls[i % len(urls)], due, rec))
        await asyncio.gather(*futures)


def _run_threads(urls: list[str], rate: float, total: int, rec: Recorder, threads: int) -> None:
    call = _requests_call(threading.local())
    with ThreadPoolExecutor(threads) as pool:
        t0 = time.monotonic()
        for i in range(total):
            due = t0 + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(call, urls[i % len(urls)], due, rec)


def run(mode: str, urls: list[str], rate: float, duration: float, threads: int) -> dict[str, Any]:
    total = int(rate * duration)
    rec = Recorder()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.monotonic()
    if mode == "operator":
        asyncio.run(_run_operator(urls, rate, total, rec))
    elif mode == "aiohttp-bare":
        asyncio.run(_run_bare(urls, rate, total, rec))
    elif mode == "requests-executor":
        asyncio.run(_run_executor(urls, rate, total, rec, threads))
    elif mode == "requests-threads":
        _run_threads(urls, rate, total, rec, threads)
    else:
        raise SystemExit(f"unknown mode {mode}")
    wall = time.monotonic() - wall0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "mode": mode,
        "threads": threads if mode.startswith("requests") else 1,
        "requests": total,
        "errors": rec.errors,
        "wall_s": wall,
        "rate": total / wall,
        "cpu_s": cpu,
        "cpu_pct": 100.0 * cpu / wall,
        "cpu_us_per_req": 1e6 * cpu / max(total, 1),
        "latency_p50_ms": 1e3 * percentile(rec.latency, 50),
        "latency_p99_ms": 1e3 * percentile(rec.latency, 99),
        "start_late_p99_ms": 1e3 * percentile(rec.late, 99),
        "max_rss_mib": cpu1.ru_maxrss / 1024.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.httpbench")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--base", required=True, help="emulator base URL")
    parser.add_argument("--prefix", default="fleet_", help="EAS service name prefix")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    urls = [f"{args.base}{PATH}{args.prefix}{i:05d}" for i in range(args.services)]
    print(json.dumps(run(args.mode, urls, args.rate, args.duration, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
