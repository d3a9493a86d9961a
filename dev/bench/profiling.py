"""Profile the operator in steady state: launch it under bench.profiled, switch sampling on
and off by signal, then turn pyinstrument's samples into hot-spot tables."""

from __future__ import annotations

import os
import signal
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from devenv.operatorproc import OperatorProcess
from devenv.paths import child_env
from devenv.procs import ManagedProcess, wait_until

IDLE_FILES = ("selectors.py",)  # the event loop waiting for I/O: not CPU
BUILTIN = "<built-in>"  # pyinstrument's file name for C functions
SKIP_OURS = ("directservice/cli.py", "bench/profiled.py")  # entry points: always 100 %


def operator_args(proc: OperatorProcess) -> list[str]:
    """The `directservice run` arguments OperatorProcess would pass."""
    args = ["run", "--liveness", f"http://127.0.0.1:{proc.liveness_port}/healthz"]
    metrics_port = getattr(proc, "metrics_port", None)
    if metrics_port is not None:  # never let it bind its 0.0.0.0 default
        args += ["--metrics-address", f"127.0.0.1:{metrics_port}"]
    return args + list(proc.extra_args)


class ProfiledOperator(OperatorProcess):
    """OperatorProcess, but `python -m bench.profiled --out DIR -- run ...`."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        out_dir: Path,
        interval: float = 0.001,
    ) -> None:
        super().__init__(kubeconfig, log_path)
        self.out_dir = out_dir
        self.interval = interval

    def start(self, timeout: float = 60.0) -> ProfiledOperator:
        env = child_env(KUBECONFIG=str(self.kubeconfig), PYTHONUNBUFFERED="1")
        argv = [
            sys.executable, "-m", "bench.profiled",
            "--out", str(self.out_dir), "--interval", str(self.interval), "--",
            *operator_args(self),
        ]  # fmt: skip
        self._proc = ManagedProcess("operator", argv, self.log_path, env=env)
        wait_until("the profiled operator's liveness endpoint", self._live, timeout, step=0.2)
        return self

    def begin(self) -> None:
        os.kill(self.pid, signal.SIGUSR1)

    def end(self, timeout: float = 120.0) -> Path:
        """Stop sampling and take the object census; returns the output folder once written."""
        done = self.out_dir / "done"
        done.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR2)
        wait_until("the profile to be written", done.exists, timeout, step=0.2)
        return self.out_dir


# -- analysis ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spot:
    name: str
    seconds: float
    share: float  # of busy (non-idle) sampled time


@dataclass(frozen=True)
class HotSpots:
    wall: float  # sampled time in all
    busy: float  # sampled time not waiting in the selector
    self_time: list[Spot]  # functions by time spent in themselves
    ours: list[Spot]  # directservice functions by time including callees
    packages: list[Spot]  # self time grouped by top-level package


def _parts(frame_info: str) -> tuple[str, str]:
    """(function, file path) of a pyinstrument frame-info string."""
    identifier = frame_info.split("\x01", 1)[0]
    fields = identifier.split("\x00")
    return fields[0], fields[1] if len(fields) > 1 else ""


def short_path(path: str) -> str:
    for marker in ("site-packages/", "/operator/", "/lib/python3.11/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 1)[-1]


def package_of(path: str) -> str:
    short = short_path(path)
    if short == path and "/" not in short:
        return short or "?"
    head = short.split("/", 1)[0]
    return head.removesuffix(".py") if head else "?"


def _idle(stack: Sequence[str]) -> bool:
    """The event loop waiting in the selector (the C poll call or its Python wrapper)."""
    _, path = _parts(stack[-1])
    if path.endswith(IDLE_FILES):
        return True
    return path == BUILTIN and len(stack) > 1 and _parts(stack[-2])[1].endswith(IDLE_FILES)


def analyse(records: Iterable[tuple[Sequence[str], float]], top: int = 15) -> HotSpots:
    """Hot spots from pyinstrument frame records ((stack root-first, seconds) pairs).
    A C function's time counts for the package of the Python code that called it."""
    self_time: defaultdict[str, float] = defaultdict(float)
    ours: defaultdict[str, float] = defaultdict(float)
    packages: defaultdict[str, float] = defaultdict(float)
    wall = 0.0
    busy = 0.0
    for stack, seconds in records:
        wall += seconds
        if not stack or _idle(stack):
            continue
        busy += seconds
        function, path = _parts(stack[-1])
        caller = _parts(stack[-2])[1] if len(stack) > 1 else path
        self_time[f"{function} ({short_path(path)})"] += seconds
        packages[package_of(caller if path == BUILTIN else path)] += seconds
        seen: set[str] = set()
        for frame in stack:
            fn, file = _parts(frame)
            if "/directservice/" in file and not file.endswith(SKIP_OURS):
                name = f"{fn} ({short_path(file)})"
                if name not in seen:
                    seen.add(name)
                    ours[name] += seconds

    def spots(totals: dict[str, float]) -> list[Spot]:
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:top]
        return [Spot(name, secs, secs / busy if busy else 0.0) for name, secs in ranked]

    return HotSpots(wall, busy, spots(self_time), spots(ours), spots(packages))


def load_records(out_dir: Path) -> list[tuple[list[str], float]]:
    from pyinstrument.session import Session  # noqa: PLC0415  (dev dependency, only here)

    session = Session.load(out_dir / "profile.pyisession")
    return [(list(stack), float(seconds)) for stack, seconds in session.frame_records]
