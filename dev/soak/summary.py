"""The soak's figures from its samples: steady-state trends of RSS and descriptors, writes,
CPU and machine load, per restart what happened, and the series the plot draws.

"Steady" excludes the first sync and a warm-up after each restart's resync: the operator
builds its state then, and a trend across that would be the build-up, not a leak. Pure:
no I/O; times in the output are seconds (or minutes) since the chaos began.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from soak.restarts import RestartRecord
from soak.sampler import OTHERS, Sample
from soak.trend import Point, pooled_trend, within


@dataclass(frozen=True)
class Segment:
    """Where one operator process was steady: [start, end] in seconds since the origin."""

    generation: int
    start: float
    end: float


def steady_segments(
    restarts: Sequence[RestartRecord], origin: float, end: float, warmup: float
) -> list[Segment]:
    """Generation 0 from the origin (the fleet synced), each later one from its resync (or
    liveness, if it never resynced), each plus `warmup`, until the next restart or the end."""
    starts = [0.0] + [
        r.at - origin + (r.resynced_after if r.resynced_after is not None else r.live_after)
        for r in restarts
    ]
    ends = [r.at - origin for r in restarts] + [end - origin]
    return [
        Segment(g, start + warmup, stop)
        for g, (start, stop) in enumerate(zip(starts, ends, strict=True))
        if stop > start + warmup
    ]


def series_of(samples: Sequence[Sample], origin: float, field: str, generation: int) -> list[Point]:
    out: list[Point] = []
    for s in samples:
        value = getattr(s, field)
        if s.generation == generation and value is not None:
            out.append((s.at - origin, float(value)))
    return out


def steady_trend(
    samples: Sequence[Sample], origin: float, field: str, segments: Sequence[Segment]
) -> dict[str, Any]:
    parts = [
        within(series_of(samples, origin, field, seg.generation), seg.start, seg.end)
        for seg in segments
    ]
    out: dict[str, Any] = pooled_trend(parts).to_json()
    out["per_segment"] = [
        {"generation": seg.generation, **pooled_trend([part]).to_json()}
        for seg, part in zip(segments, parts, strict=True)
    ]
    return out


def cumulative_writes(samples: Sequence[Sample]) -> list[tuple[float, int]]:
    """(time, writes by every operator process so far): each process counts from zero, so
    the last value seen of the earlier ones is added (a SIGKILL loses what came after it)."""
    done = 0
    last: dict[int, int] = {}
    out: list[tuple[float, int]] = []
    for s in samples:
        if s.generation is None or s.writes is None:
            continue
        total = sum(s.writes.values())
        if s.generation not in last:
            done = sum(last.values())
        last[s.generation] = total
        out.append((s.at, done + total))
    return out


def writes_by_kind(samples: Sequence[Sample]) -> dict[str, int]:
    """The last counters seen of each operator process, added up."""
    last: dict[int, Mapping[str, int]] = {}
    for s in samples:
        if s.generation is not None and s.writes is not None:
            last[s.generation] = s.writes
    total: Counter[str] = Counter()
    for counters in last.values():
        total.update(counters)
    return dict(sorted(total.items()))


def apiserver_delta(samples: Sequence[Sample], origin: float) -> tuple[dict[str, int], float]:
    """The API server's writes to the operator's resources from the first scrape at or after
    the origin to the last one, and the seconds between them."""
    scraped = [s for s in samples if s.apiserver_writes is not None and s.at >= origin]
    if len(scraped) < 2:
        return {}, 0.0
    first, last = scraped[0], scraped[-1]
    assert first.apiserver_writes is not None and last.apiserver_writes is not None
    delta = {
        key: value - first.apiserver_writes.get(key, 0)
        for key, value in last.apiserver_writes.items()
        if value - first.apiserver_writes.get(key, 0) > 0
    }
    return dict(sorted(delta.items())), last.at - first.at


def cpu_load(
    samples: Sequence[Sample], origin: float, segments: Sequence[Segment]
) -> dict[str, Any]:
    """Operator CPU over its steady segments; the others and the machine over the chaos."""
    used = elapsed = 0.0
    for seg in segments:
        points = within(
            series_of(samples, origin, "cpu_seconds", seg.generation), seg.start, seg.end
        )
        if len(points) >= 2:
            used += points[-1][1] - points[0][1]
            elapsed += points[-1][0] - points[0][0]
    after = [s for s in samples if s.at >= origin]
    out: dict[str, Any] = {"operator_pct": 100.0 * used / elapsed if elapsed else math.nan}
    if len(after) >= 2:
        first, last = after[0], after[-1]
        wall = last.at - first.at
        for name in OTHERS:
            if name in first.others_cpu and name in last.others_cpu:
                spent = last.others_cpu[name] - first.others_cpu[name]
                out[f"{name}_pct"] = 100.0 * spent / wall if wall > 0 else math.nan
        ticks = last.machine[1] - first.machine[1]
        busy = (last.machine[0] - first.machine[0]) / ticks if ticks > 0 else math.nan
        out["machine_busy_fraction"] = busy  # of all cores
    return out


def poll_rate(
    samples: Sequence[Sample],
    origin: float,
    segments: Sequence[Segment],
    services: int,
    interval: float,
) -> dict[str, Any]:
    """Polls the emulator answered against those a punctual fleet makes (services / interval
    a second), over the steady segments and over the whole chaos. Faults lower it a little
    (failures back off); a starved operator, whose timers fire late, lowers it a lot."""

    def rate(points: Sequence[Point]) -> tuple[float, float]:
        if len(points) < 2:
            return 0.0, 0.0
        return points[-1][1] - points[0][1], points[-1][0] - points[0][0]

    polls = [(s.at - origin, float(s.polls)) for s in samples if s.polls is not None]
    done = elapsed = 0.0
    for seg in segments:
        got, seconds = rate(within(polls, seg.start, seg.end))
        done, elapsed = done + got, elapsed + seconds
    chaos_done, chaos_seconds = rate([p for p in polls if p[0] >= 0.0])

    def pct(count: float, seconds: float) -> float:
        return 100.0 * count * interval / (services * seconds) if seconds > 0 else math.nan

    return {
        "steady_pct": pct(done, elapsed),
        "chaos_pct": pct(chaos_done, chaos_seconds),
        "chaos_polls": int(chaos_done),
    }


def load(samples: Sequence[Sample], cores: int) -> list[tuple[float | None, float | None]]:
    """Per sample, since the one before: busy cores of the whole machine, and of those the
    cores used outside the soak's processes (other work sharing the box); None at first."""
    out: list[tuple[float | None, float | None]] = [(None, None)] if samples else []
    for before, after in itertools.pairwise(samples):
        wall = after.at - before.at
        ticks = after.machine[1] - before.machine[1]
        if wall <= 0 or ticks <= 0:
            out.append((None, None))
            continue
        machine = cores * (after.machine[0] - before.machine[0]) / ticks
        ours = sum(
            after.others_cpu[name] - before.others_cpu[name]
            for name in OTHERS
            if name in after.others_cpu and name in before.others_cpu
        )
        if after.generation == before.generation and None not in (
            after.cpu_seconds,
            before.cpu_seconds,
        ):
            ours += (after.cpu_seconds or 0.0) - (before.cpu_seconds or 0.0)
        out.append((round(machine, 3), round(max(0.0, machine - ours / wall), 3)))
    return out


def per_minute(times: Sequence[float], origin: float, start: float, end: float) -> list[int]:
    """How many of `times` fall in each minute from `start` to `end` (minutes since origin)."""
    bins = [0] * max(0, math.ceil(end - start))
    for t in times:
        index = math.floor((t - origin) / 60.0 - start)
        if 0 <= index < len(bins):
            bins[index] += 1
    return bins


def series(samples: Sequence[Sample], origin: float, cores: int) -> dict[str, list[Any]]:
    """What the plot draws, one entry per sample (None where nothing was measured)."""
    writes = dict(cumulative_writes(samples))
    busy = load(samples, cores)
    return {
        "minutes": [round((s.at - origin) / 60.0, 4) for s in samples],
        "generation": [s.generation for s in samples],
        "rss_mib": [None if s.rss_kib is None else round(s.rss_kib / 1024.0, 2) for s in samples],
        "fds": [s.fds for s in samples],
        "writes": [writes.get(s.at) for s in samples],
        "machine_cores": [m for m, _ in busy],
        "outside_cores": [o for _, o in busy],
    }


def writes_across(samples: Sequence[Sample], start: float, end: float) -> int | None:
    """API server writes to the operator's resources between the last scrape at or before
    `start` and the first at or after `end` (None without both)."""
    scraped = [s for s in samples if s.apiserver_writes is not None]
    before = [s for s in scraped if s.at <= start]
    after = [s for s in scraped if s.at >= end]
    if not before or not after:
        return None
    first, last = before[-1].apiserver_writes, after[0].apiserver_writes
    assert first is not None and last is not None
    return sum(last.values()) - sum(first.values())


def restart_json(r: RestartRecord, origin: float, samples: Sequence[Sample]) -> dict[str, Any]:
    resynced = r.at + (r.resynced_after if r.resynced_after is not None else r.live_after)
    return {
        "signal": r.signal,
        "at_minutes": round((r.at - origin) / 60.0, 2),
        "old_process": r.exit,
        "exited_after_s": r.exited_after,
        "live_after_s": round(r.live_after, 2),
        "resynced_after_s": None if r.resynced_after is None else round(r.resynced_after, 2),
        "generation": r.generation,
        # Includes what the faults of that time cost; a restart itself should write nothing.
        "apiserver_writes_until_resynced": writes_across(samples, r.at, resynced),
    }
