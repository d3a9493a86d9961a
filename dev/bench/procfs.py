"""CPU time and memory of a process from /proc (Linux), sampled before and after a window."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_text: str) -> int:
    """utime + stime (fields 14 and 15) of a /proc/<pid>/stat line. The command name (field 2)
    may hold spaces and parentheses, so fields are counted after its last ')'."""
    rest = stat_text[stat_text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state), so field n is rest[n - 3].
    return int(rest[11]) + int(rest[12])


def status_kib(status_text: str, key: str) -> int:
    """A "Key:   1234 kB" value of /proc/<pid>/status, in KiB (0 when absent)."""
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    return 0


@dataclass(frozen=True)
class ProcSample:
    wall: float  # time.monotonic()
    cpu_seconds: float  # user + system, all threads
    rss_kib: int  # VmRSS
    hwm_kib: int  # VmHWM: peak resident set since start


def sample(pid: int) -> ProcSample:
    proc = Path(f"/proc/{pid}")
    stat = (proc / "stat").read_text()
    status = (proc / "status").read_text()
    return ProcSample(
        wall=time.monotonic(),
        cpu_seconds=cpu_ticks(stat) / CLOCK_TICKS,
        rss_kib=status_kib(status, "VmRSS"),
        hwm_kib=status_kib(status, "VmHWM"),
    )


def children(pid: int) -> list[int]:
    """The direct children of `pid`, from every thread's children list."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def sample_tree(pid: int) -> ProcSample:
    """`pid` and its descendants summed, e.g. the operator and its health checker's child
    process. A descendant that ends while sampled is left out."""
    own = sample(pid)
    cpu, rss, hwm = own.cpu_seconds, own.rss_kib, own.hwm_kib
    pending = children(pid)
    while pending:
        child = pending.pop()
        try:
            part = sample(child)
            pending += children(child)
        except OSError:
            continue
        cpu, rss, hwm = cpu + part.cpu_seconds, rss + part.rss_kib, hwm + part.hwm_kib
    return ProcSample(wall=own.wall, cpu_seconds=cpu, rss_kib=rss, hwm_kib=hwm)


def cpu_percent(before: ProcSample, after: ProcSample) -> float:
    """CPU used between two samples, in % of one core."""
    elapsed = after.wall - before.wall
    return 0.0 if elapsed <= 0 else 100.0 * (after.cpu_seconds - before.cpu_seconds) / elapsed


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user..steal; guest time is already inside user
    return total - idle, total


def busy_cores(before: tuple[int, int], after: tuple[int, int]) -> float:
    """Average number of busy cores between two machine_ticks() samples."""
    total = after[1] - before[1]
    cores = os.cpu_count() or 1
    return 0.0 if total <= 0 else cores * (after[0] - before[0]) / total


def mib(kib: int) -> float:
    return kib / 1024.0


def machine() -> dict[str, str]:
    """Cores, memory and CPU model of this machine, for the report header."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        total = status_kib(Path("/proc/meminfo").read_text(), "MemTotal")
    except OSError:
        total = 0
    return {
        "cores": str(os.cpu_count() or 0),
        "memory": f"{total / 1024 / 1024:.1f} GiB",
        "cpu": model,
    }
