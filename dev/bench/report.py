"""The results as Markdown: printed to the terminal and written to docs/benchmarks.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.coalesce import CoalesceResult
from bench.env import Settings
from bench.fleet import FleetResult
from bench.large import LargeResult
from bench.markdown import table
from bench.overload import OverloadResult
from bench.profiling import HotSpots, Spot
from bench.propagation import PropagationResult
from bench.shards import ShardsResult, shards_targets
from bench.stats import ratio

if TYPE_CHECKING:  # bench.healthreport renders it and imports this module
    from bench.handover import HandoverResult
    from bench.health import HealthResult


@dataclass
class Results:
    settings: Settings
    meta: dict[str, str]
    large: LargeResult | None = None
    levels: list[FleetResult] = field(default_factory=list)
    propagation: PropagationResult | None = None
    restart: tuple[float, int] | None = None
    profile: HotSpots | None = None
    profile_cpu_pct: float = math.nan
    profile_text: str = ""
    memory: dict[str, Any] = field(default_factory=dict)
    http: list[dict[str, Any]] = field(default_factory=list)
    health: HealthResult | None = None
    handover: HandoverResult | None = None
    coalesce: CoalesceResult | None = None
    overload: OverloadResult | None = None
    shards: ShardsResult | None = None
    notes: list[str] = field(default_factory=list)

    def level(self, n: int) -> FleetResult | None:
        return next((r for r in self.levels if r.services == n), None)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "**MISS**")


_table = table


def targets(res: Results) -> list[str]:
    s = res.settings
    rows: list[list[str]] = []
    fleet = res.level(s.fleet_size)
    if fleet is not None:
        tag = f"fleet {fleet.services}x{s.instances} @{s.interval:g}s"
        rows += [
            [f"{tag}: polls done / scheduled", "≥ 99 %",
             f"{fmt(fleet.polls_pct, 2)} % ({fleet.polls_done:,} / {fleet.polls_scheduled:,.0f})",
             _verdict(fleet.polls_pct >= 99)],
            [f"{tag}: timer lateness p99 (gap - interval)", "≤ 500 ms",
             f"{fmt(fleet.lateness_ms.p99)} ms (p50 {fmt(fleet.lateness_ms.p50)} ms)",
             _verdict(fleet.lateness_ms.p99 <= 500)],
            [f"{tag}: operator CPU", "≤ 50 % of a core", f"{fmt(fleet.cpu_pct)} %",
             _verdict(fleet.cpu_pct <= 50)],
            [f"{tag}: operator peak RSS (VmHWM)", "≤ 150 MiB", f"{fmt(fleet.hwm_mib)} MiB",
             _verdict(fleet.hwm_mib <= 150)],
            [f"{tag}: steady-state writes", "0 / min", f"{fmt(fleet.writes_per_min, 2)} / min",
             _verdict(fleet.operator_writes == 0)],
        ]  # fmt: skip
    rows += _one_replica_rows(res)
    prop = res.propagation
    if prop is not None:
        rows += [
            [f"propagation overhead p50 ({prop.fleet} services loaded)", "≤ 30 ms",
             f"{fmt(prop.delay_ms.p50)} ms", _verdict(prop.delay_ms.p50 <= 30)],
            [f"propagation overhead p99 ({prop.fleet} services loaded)", "≤ 100 ms",
             f"{fmt(prop.delay_ms.p99)} ms", _verdict(prop.delay_ms.p99 <= 100)],
        ]  # fmt: skip
    large = res.large
    if large is not None:
        one = next((st for st in large.steps if st.name.startswith("1 instance")), None)
        still = next((st for st in large.steps if st.name.startswith("no change")), None)
        if one is not None:
            measured = f"{one.writes} (naive {one.naive})"
            # Draining makes a replacement two changes: the successor in beside the drained
            # instance (terminating), then the drained one out when drainSeconds are over.
            rows.append([f"{large.instances:,}-instance service: 1-instance change",
                         "exactly 1 slice write, +1 at the drain's end", measured,
                         _verdict(one.writes == 2)])  # fmt: skip
        if still is not None:
            rows.append([f"{large.instances:,}-instance service: no-change polls", "0 writes",
                         str(still.writes), _verdict(still.writes == 0)])  # fmt: skip
        cpu = large.cpu_ms_per_unchanged_poll
        rows.append([f"{large.instances:,}-instance service: CPU of an unchanged poll",
                     "≤ 10 ms", f"{fmt(cpu)} ms",
                     _verdict(None if math.isnan(cpu) else cpu <= 10)])  # fmt: skip
    low, high = (res.level(n) for n in (min(s.curve), max(s.curve)))
    if "curve" in s.scenarios and low is not None and high is not None and low is not high:
        factor = ratio(high.cpu_ms_per_poll, low.cpu_ms_per_poll)
        rows.append([f"CPU per poll at {high.services:,} vs {low.services:,} services",
                     "≤ 1.5x", f"{fmt(factor, 2)}x ({fmt(high.cpu_ms_per_poll, 3)} vs "
                     f"{fmt(low.cpu_ms_per_poll, 3)} ms)", _verdict(factor <= 1.5)])  # fmt: skip
    rows += _overload_rows(res.overload)
    co = res.coalesce
    if co is not None:
        rows.append([f"{co.services:,} DirectServices on {co.upstreams} upstreams: discovery calls",
                     f"those of {co.upstreams} services ({fmt(co.alone_per_min, 0)}/min), "
                     "≤ 1.5x", f"{fmt(co.calls_per_min, 0)}/min "
                     f"({fmt(ratio(co.calls_per_min, co.alone_per_min), 2)}x)",
                     _verdict(co.calls_per_min <= 1.5 * co.alone_per_min)])  # fmt: skip
    if res.shards is not None:
        rows += [[t, g, m, _verdict(ok)] for t, g, m, ok in shards_targets(res.shards)]
    return _table(["target", "goal", "measured", ""], rows)


ONE_REPLICA = 3000  # services one replica must carry (at 10 instances, 5 s)


def _one_replica_rows(res: Results) -> list[list[str]]:
    """The targets of one replica at 3,000 services, and the memory slope of the curve."""
    rows: list[list[str]] = []
    big = res.level(ONE_REPLICA)
    if big is not None:
        tag = f"fleet {big.services:,}x{res.settings.instances} @{big.interval:g}s"
        rows += [
            [f"{tag}: polls done / scheduled", "≥ 99 %", f"{fmt(big.polls_pct, 2)} %",
             _verdict(big.polls_pct >= 99)],
            [f"{tag}: timer lateness p99", "≤ 500 ms", f"{fmt(big.lateness_ms.p99)} ms",
             _verdict(big.lateness_ms.p99 <= 500)],
            [f"{tag}: start-up sync (new DirectServices)", "≤ 60 s", f"{fmt(big.sync_seconds)} s",
             _verdict(big.sync_seconds <= 60)],
            [f"{tag}: steady-state writes", "0 / min", f"{fmt(big.writes_per_min, 2)} / min",
             _verdict(big.operator_writes == 0)],
            [f"{tag}: operator peak RSS (VmHWM)", "≤ 250 MiB", f"{fmt(big.hwm_mib)} MiB",
             _verdict(big.hwm_mib <= 250)],
        ]  # fmt: skip
    if len(res.levels) > 1:
        first, last = res.levels[0], res.levels[-1]
        extra = (last.rss_mib - first.rss_mib) * 1024 / max(last.services - first.services, 1)
        rows.append([f"marginal memory, {first.services:,} to {last.services:,} services",
                     "≤ 40 KiB / service", f"{fmt(extra)} KiB", _verdict(extra <= 40)])  # fmt: skip
    return rows


def _overload_rows(over: OverloadResult | None) -> list[list[str]]:
    if over is None:
        return []
    f = over.fleet
    tag = f"{f.services:,} services at {f.interval:g} s on one replica (twice its load)"
    return [
        [f"{tag}: every service polled, evenly", "0 unpolled, p90 ÷ p10 ≤ 1.5",
         f"{over.unpolled} unpolled, {fmt(over.spread, 2)}",
         _verdict(over.unpolled == 0 and over.spread <= 1.5)],
        [f"{tag}: writes", "< 1 / min / 100 services", fmt(over.writes_per_min_per_100, 2),
         _verdict(over.writes_per_min_per_100 < 1)],
        [f"{tag}: Overloaded flaps", "0 verdict turns in the window",
         str(over.turns_in_window), _verdict(over.turns_in_window == 0)],
    ]  # fmt: skip


def curve(res: Results) -> list[str]:
    rows = [
        [f"{r.services:,}", fmt(r.sync_seconds), f"{r.polls_done:,} / {r.polls_scheduled:,.0f}",
         fmt(r.polls_pct, 2), f"{fmt(r.lateness_ms.p50)} / {fmt(r.lateness_ms.p99)}",
         fmt(r.beyond_jitter_ms.p99), fmt(r.cpu_pct), fmt(r.cpu_ms_per_poll, 3),
         f"{fmt(r.rss_mib)} / {fmt(r.hwm_mib)}", fmt(r.rss_kib_per_service),
         str(r.operator_writes), fmt(r.apiserver_cpu_pct), fmt(r.etcd_cpu_pct),
         fmt(r.emulator_cpu_pct), f"{fmt(r.machine_cores, 2)} / {fmt(r.other_cores, 2)}"]
        for r in res.levels
    ]  # fmt: skip
    head = ["services", "sync s", "polls done / scheduled", "%", "lateness p50 / p99 ms",
            "beyond jitter p99 ms", "operator CPU %", "CPU ms / poll", "RSS / peak MiB",
            "KiB RSS / service", "writes", "apiserver CPU %", "etcd CPU %",
            "emulator CPU %", "machine busy / other cores"]  # fmt: skip
    return _table(head, rows)


def large_section(large: LargeResult) -> list[str]:
    lines = [
        f"{large.instances:,} instances, {large.slices} slices of ≤ 100, answer "
        f"{large.response_kib:,.0f} KiB. Apply → first poll "
        f"{fmt(large.apply_to_first_poll_s, 2)} s "
        f"(the operator starts each service at a random phase of its interval), first poll → "
        f"all {large.slices} slices seen {fmt(large.first_poll_to_all_s, 2)} s, apply → all "
        f"{fmt(large.apply_to_all_s, 2)} s. CPU per unchanged poll of this service "
        f"(fetch, compare): {fmt(large.cpu_ms_per_unchanged_poll)} ms beyond the idle "
        f"operator's {fmt(100 * large.idle_cores, 2)} % of a core "
        f"({fmt(large.gross_cpu_ms_per_unchanged_poll)} ms with it).",
        "",
    ]
    rows = [
        [st.name, str(st.writes), ", ".join(f"{k} {v}" for k, v in st.slice_writes.items()) or "-",
         str(st.slice_events), f"{st.slices_before} → {st.slices_after}", str(st.naive),
         fmt(ratio(st.writes, st.naive), 2), fmt(st.visible_s, 2),
         ", ".join(f"{k} {v}" for k, v in st.other_writes.items()) or "-"]
        for st in large.steps
    ]  # fmt: skip
    head = ["change", "slice writes", "by verb", "watch events", "slices", "naive writes",
            "ours ÷ naive", "visible after s", "other writes"]  # fmt: skip
    return lines + _table(head, rows)


def naive_section(res: Results) -> list[str]:
    rows: list[list[str]] = []
    ours_total = naive_total = 0
    if res.propagation is not None:
        p = res.propagation
        ours = p.writes.get("PUT endpointslices", 0) + p.writes.get("POST endpointslices", 0)
        rows.append([f"propagation: {p.changes} changes of a 10-instance service", str(ours),
                     str(p.naive), fmt(ratio(ours, p.naive), 2)])  # fmt: skip
        ours_total += ours
        naive_total += p.naive
    size = f"{res.large.instances:,}" if res.large else ""
    for st in res.large.steps if res.large else []:
        if st.naive:
            share = fmt(ratio(st.writes, st.naive), 2)
            rows.append([f"{size} instances: {st.name}", str(st.writes), str(st.naive), share])
            ours_total += st.writes
            naive_total += st.naive
    rows.append(["**all changes**", str(ours_total), str(naive_total),
                 fmt(ratio(ours_total, naive_total), 3)])  # fmt: skip
    return _table(["changes", "our slice writes", "naive writes", "ours ÷ naive"], rows)


def http_section(res: Results) -> list[str]:
    """One row per client, with its CPU per request against aiohttp's leanest use (the
    client the operator's replaced), measured in the same run."""
    base = next((r["cpu_us_per_req"] for r in res.http if r["mode"] == "aiohttp-bare"), None)

    def ratio(r: dict[str, Any]) -> str:
        return f"{r['cpu_us_per_req'] / base:.2f}x" if base else "-"

    rows = [
        [r["mode"], str(r["threads"]), f"{r['rate']:.1f}", str(r["errors"]), fmt(r["cpu_pct"]),
         fmt(r["cpu_us_per_req"], 0), ratio(r), fmt(r["latency_p50_ms"], 2),
         fmt(r["latency_p99_ms"], 2), fmt(r["start_late_p99_ms"], 2), fmt(r["max_rss_mib"]),
         fmt(r.get("emulator_cpu_pct"))]
        for r in res.http
    ]  # fmt: skip
    head = ["client", "threads", "req/s", "errors", "client CPU %", "CPU µs / req",
            "CPU ÷ aiohttp-bare", "latency p50 ms", "latency p99 ms", "start late p99 ms",
            "max RSS MiB", "emulator CPU %"]  # fmt: skip
    return _table(head, rows)


def profile_section(res: Results) -> list[str]:
    hot = res.profile
    if hot is None:
        return []
    lines = [
        f"pyinstrument sampled the event-loop thread for {hot.wall:.0f} s; it was busy "
        f"{hot.busy:.1f} s ({100 * hot.busy / hot.wall if hot.wall else 0:.1f} % of the "
        f"time; the process used {fmt(res.profile_cpu_pct)} % of a core while profiled).",
        "",
        "Self time by package:",
        "",
    ]
    lines += _spots("package", hot.packages)
    lines += ["Functions by self time:", ""]
    lines += _spots("function", hot.self_time)
    lines += ["directservice functions including callees:", ""]
    lines += _spots("function", hot.ours)
    return lines


def _spots(kind: str, spots: list[Spot]) -> list[str]:
    rows = [[f"`{p.name}`", fmt(p.seconds, 2), fmt(100 * p.share)] for p in spots]
    return _table([kind, "s", "% of busy"], rows)


def memory_section(res: Results) -> list[str]:
    mem = res.memory
    if not mem:
        return []
    services = res.settings.fleet_size
    total = float(mem["bytes"])
    lines = [
        f"Object census after the profile window, samples discarded ({services:,} services): "
        f"{mem['objects']:,} live Python objects, {total / 2**20:,.1f} MiB by sys.getsizeof "
        f"(shallow sizes; allocator overhead and fragmentation not included) of "
        f"{mem['rss_kib'] / 1024:,.1f} MiB RSS (before profiling); "
        f"{total / services / 1024:,.1f} KiB and "
        f"{mem['objects'] / services:,.0f} objects per service if all of it were per service.",
        "",
    ]
    rows = [
        [f"`{t['type']}`", f"{t['count']:,}", fmt(t["bytes"] / 2**20, 2),
         fmt(t["count"] / services, 1)]
        for t in mem["types"][:20]
    ]  # fmt: skip
    return lines + _table(["type", "objects", "MiB", "objects / service"], rows)
