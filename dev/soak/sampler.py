"""Samples every few seconds: the operator's RSS, open descriptors and CPU from /proc, its
write counters from its /metrics, the API server's write counts, and the CPU of the other
processes and of the whole machine (the box is shared, so the load is part of the result).

Metrics are scraped every `scrape_every` samples, as often as a Prometheus would: a scrape of
the operator renders a few thousand series, and reading it every sample would be load the
operator does not otherwise carry.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from bench import procfs
from bench.env import Env
from bench.stats import OPERATOR_RESOURCES, by_resource, parse_samples, write_delta
from soak.restarts import OperatorSlot

WRITES_METRIC = "directservice_api_writes_total"
OTHERS = ("apiserver", "etcd", "emulator", "soak")


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    generation: int | None  # the operator process sampled; None while none runs
    rss_kib: int | None = None
    fds: int | None = None
    cpu_seconds: float | None = None  # that process's user + system time since it started
    writes: Mapping[str, int] | None = None  # its directservice_api_writes_total, "kind verb"
    apiserver_writes: Mapping[str, int] | None = None  # to the operator's resources, ever
    polls: int | None = None  # discovery requests the emulator has answered, ever
    others_cpu: Mapping[str, float] = field(default_factory=dict)  # cumulative seconds
    machine: tuple[int, int] = (0, 0)  # busy, total ticks of all cores


def operator_writes(metrics_text: str) -> dict[str, int]:
    """directservice_api_writes_total by "kind verb" from a Prometheus exposition."""
    out: Counter[str] = Counter()
    for labels, value in parse_samples(metrics_text, WRITES_METRIC):
        out[f"{labels.get('kind', '')} {labels.get('verb', '')}"] += int(value)
    return dict(sorted(out.items()))


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    def __init__(
        self, env: Env, slot: OperatorSlot, every: float = 5.0, scrape_every: int = 3
    ) -> None:
        self.env = env
        self.slot = slot
        self.every = every
        self.scrape_every = scrape_every
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return list(self.samples)

    def run(self, stop: threading.Event) -> None:
        count = 0
        while True:
            started = time.monotonic()
            sample = self.sample(scrape=count % self.scrape_every == 0)
            with self._lock:
                self.samples.append(sample)
            count += 1
            if stop.wait(max(0.0, self.every - (time.monotonic() - started))):
                return

    def sample(self, scrape: bool) -> Sample:
        at = time.time()
        others = self._others()
        machine = procfs.machine_ticks()
        apiserver = self._apiserver_writes() if scrape else None
        polls = self._polls() if scrape else None
        current = self.slot.current()
        idle = Sample(
            at, None, apiserver_writes=apiserver, polls=polls, others_cpu=others, machine=machine
        )
        if current is None:
            return idle
        generation, proc = current
        try:
            pid = proc.pid
            proc_sample = procfs.sample_tree(pid)
            fds = open_fds(pid)
            writes = operator_writes(proc.metrics_text()) if scrape else None
        except Exception as exc:  # it is being restarted under our feet
            self.errors.append(f"{at:.0f}: {exc!r}")
            return idle
        return Sample(
            at=at,
            generation=generation,
            rss_kib=proc_sample.rss_kib,
            fds=fds,
            cpu_seconds=proc_sample.cpu_seconds,
            writes=writes,
            apiserver_writes=apiserver,
            polls=polls,
            others_cpu=others,
            machine=machine,
        )

    def _others(self) -> dict[str, float]:
        pids = {
            "apiserver": self.env.apiserver_pid,
            "etcd": self.env.etcd_pid,
            "emulator": self.env.emulator.pid,
            "soak": os.getpid(),
        }
        out: dict[str, float] = {}
        for name, pid in pids.items():
            try:
                out[name] = procfs.sample(pid).cpu_seconds
            except OSError:
                continue
        return out

    def _polls(self) -> int | None:
        try:
            return sum(self.env.emulator.per_service().values())
        except Exception as exc:
            self.errors.append(f"emulator counters: {exc!r}")
            return None

    def _apiserver_writes(self) -> dict[str, int] | None:
        try:
            counts = self.env.requests()
        except Exception as exc:
            self.errors.append(f"apiserver metrics: {exc!r}")
            return None
        return by_resource(write_delta(Counter(), counts, OPERATOR_RESOURCES))
