"""The "Health checks" section of docs/benchmarks.md, and how a run that measured only the
health scenario (or everything but it) leaves the rest of the file as it was."""

from __future__ import annotations

import math

from bench.health import HealthResult
from bench.healthfleet import CheckedWindow
from bench.healthprobes import Method
from bench.healthstats import HealthCounters
from bench.report import Results, fmt
from bench.stats import ratio

HEADING = "## Health checks"
# The section goes before these, whichever comes first (the notes and method stay last).
FOLLOWERS = ("## Notes from this run", "## How each number is measured")
GOAL_PER_CORE = 5000.0
CONTENDED_CORES = 0.3  # other processes' CPU in a window beyond which its figures are suspect

METHOD = """\
How these are measured:

- **Check cost**: one network-lab host with {addresses:,} addresses and one accept-and-close
  server (`python -m bench.acceptor`, pinned to the other core) listening on all of them; the
  checks run in a child process (`python -m bench.healthprobes`) pinned to one core, from
  the root namespace over the lab's routed link. Each method is a closed loop, 256 checks
  in flight, round-robin over every address, after one warm-up check per address. CPU is
  the child's user + system time (`time.process_time`) over the loop, so it includes the
  kernel's share of the handshake; kernel share = system ÷ (user + system). Achieved
  checks/s is checks ÷ wall time on that one core. Baselines in the same process and run:
  a blocking connect-and-reset loop (the syscalls no check can avoid) and
  `asyncio.open_connection` under `asyncio.wait_for`.
- **Checker**: the real HealthChecker with the real probe (`bench.healthcost.
  measure_scheduled`), {scheduled:,} targets at a {interval:g} s interval for {duration:g} s
  after a first round; then the same with a probe that answers at once (no connection):
  scheduling, verdicts and metrics alone.
- **Time to removal**: {services} DirectServices (static provider, 3 instances each, every
  instance a `devenv.instance` server on its own lab host), health check tcp every 1 s,
  timeout 500 ms, out after 2 failures, back after 2 passes, CoreDNS TTL {ttl} s; the real
  operator process and CoreDNS. One thread per DirectService kills one instance (SIGKILL)
  at a random phase of the check interval, queries CoreDNS every 20 ms until the A records
  are exactly the other two (removal), restarts the instance and queries until all three
  are back (return, from the moment it listens again). Queries go to CoreDNS itself, so no
  client cache adds the TTL; the bounds include it. Writes: the operator's
  `directservice_api_writes_total` over all kills ÷ removals and returns seen.
- **Fleet with checks**: as the fleet scenario (PAI-EAS emulator, poll every 5 s), but the
  instances are the addresses of ONE lab host with one accept-and-close server on all, and
  the operator watches only this fleet's namespace. Two windows of {window:g} s on the synced
  fleet, each with a fresh operator: without `healthCheck`, then with a tcp check every 5 s
  on every instance. Checks/s and check lateness are the differences of the operator's
  `directservice_health_checks_total` and `directservice_health_check_lateness_seconds`
  over the window (quantiles interpolated within histogram buckets, as Prometheus does).
"""


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return [*out, *("| " + " | ".join(row) + " |" for row in rows), ""]


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**MISS**"


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.2f}x"


def cost_lines(h: HealthResult) -> list[str]:
    cost = h.cost
    tcp = cost.method("probe: tcp")
    reference = tcp.cpu_us_per_check if tcp is not None else math.nan
    rows = [
        [m.name, f"{m.checks:,}", f"{m.passed:,}", fmt(m.cpu_us_per_check),
         fmt(100 * m.kernel_share, 0) + " %", fmt(m.checks_per_second, 0),
         fmt(m.checks_per_cpu_second, 0), _x(ratio(m.cpu_us_per_check, reference))]
        for m in cost.methods
    ]  # fmt: skip
    head = ["method", "checks", "passed", "CPU µs / check", "kernel share",
            "checks / s achieved", "checks / CPU-second", "CPU ÷ tcp probe's"]  # fmt: skip
    lines = ["### Check cost on one core", "", *_table(head, rows)]
    targets = [_per_core_row(tcp)] if tcp is not None else []
    for name, run in (("HealthChecker + probe", cost.checker),
                      ("HealthChecker, instant probe", cost.scheduling_only)):  # fmt: skip
        per_check = 1e6 * run.cpu_seconds / run.checks if run.checks else math.nan
        targets.append(
            [f"{name}: {run.targets:,} targets @ {run.interval:g} s "
             f"({run.checks / run.duration:,.0f} checks/s)", "-",
             f"{fmt(run.cpu_percent_of_a_core)} % of a core, {fmt(per_check)} µs / check, "
             f"{run.passed:,} of {run.checks:,} passed, mean lateness "
             f"{fmt(run.mean_lateness_ms, 2)} ms, {fmt(100 * run.late_over_10ms, 2)} % > 10 ms",
             "-"]
        )  # fmt: skip
    lines += _table(["measure", "goal", "measured", ""], targets)
    lines.append(f"The accept-and-close server used {fmt(cost.server_cpu_us_per_connection)} µs "
                 "of CPU per connection it accepted (the other core).")  # fmt: skip
    return [*lines, ""]


def _per_core_row(tcp: Method) -> list[str]:
    return [
        "TCP checks per core (probe)", f"≥ {GOAL_PER_CORE:,.0f} / s",
        f"{fmt(tcp.checks_per_cpu_second, 0)} / CPU-second ({fmt(tcp.cpu_us_per_check)} µs "
        f"each); achieved {fmt(tcp.checks_per_second, 0)} / s",
        _verdict(tcp.checks_per_cpu_second >= GOAL_PER_CORE),
    ]  # fmt: skip


def kill_lines(h: HealthResult) -> list[str]:
    k = h.kills
    rows = [
        [name, str(summary.n), fmt(summary.p50, 2), fmt(summary.p90, 2), fmt(summary.p99, 2),
         fmt(summary.max, 2), f"{bound:g}", f"{within} / {summary.n}",
         _verdict(summary.p99 <= bound)]
        for name, summary, bound, within in (
            ("killed → out of DNS", k.removal_s, k.removal_bound, k.removals_within_bound),
            ("listening → back in DNS", k.return_s, k.return_bound, k.returns_within_bound),
        )
    ]  # fmt: skip
    head = ["transition", "n", "p50 s", "p90 s", "p99 s", "max s", "bound s", "within bound",
            "p99 ≤ bound"]  # fmt: skip
    return [
        "### Time to removal and return",
        "",
        f"{k.kills} kills over {k.services} DirectServices at once. Bounds: removal "
        f"unhealthyThreshold x interval + timeout + TTL = 2 x 1 + 0.5 + {k.ttl} = "
        f"{k.removal_bound:g} s; return healthyThreshold x interval + TTL = 2 x 1 + {k.ttl} = "
        f"{k.return_bound:g} s.",
        "",
        *_table(head, rows),
        f"Slice writes per transition: {fmt(k.slice_writes_per_transition, 2)} (expected 1: "
        f"{k.slice_writes:.0f} EndpointSlice writes for {k.transitions} removals and returns "
        f"seen; all writes {k.all_writes:.0f}, {fmt(k.writes_per_transition, 2)} per "
        f"transition; others: {_writes(k.other_writes)}); {k.missed} transitions not seen "
        "within 20 s.",
        "",
    ]


def _writes(writes: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(writes.items())) or "none"


def _fleet_row(name: str, plain: str, checked: str, compare: str = "") -> list[str]:
    return [name, plain, checked, compare]


def fleet_lines(h: HealthResult, res: Results) -> list[str]:
    f = h.fleet
    a, b = f.plain, f.checked

    def both(pick: str, digits: int = 1) -> tuple[str, str, str]:
        x, y = getattr(a.fleet, pick), getattr(b.fleet, pick)
        return fmt(x, digits), fmt(y, digits), _x(ratio(y, x))

    rows = [
        _fleet_row("operator CPU, cores", fmt(a.fleet.cpu_pct / 100, 3),
                   fmt(b.fleet.cpu_pct / 100, 3), _x(ratio(b.fleet.cpu_pct, a.fleet.cpu_pct))),
        _fleet_row("CPU ms per poll (all of the operator's CPU ÷ polls)",
                   *both("cpu_ms_per_poll", 3)),
        _fleet_row("RSS / peak RSS (VmHWM), MiB",
                   f"{fmt(a.fleet.rss_mib)} / {fmt(a.fleet.hwm_mib)}",
                   f"{fmt(b.fleet.rss_mib)} / {fmt(b.fleet.hwm_mib)}",
                   _x(ratio(b.fleet.hwm_mib, a.fleet.hwm_mib))),
        _fleet_row("polls done / scheduled", _polls(a), _polls(b)),
        _fleet_row("poll lateness p50 / p99 ms (gap - interval)", _poll_lateness(a),
                   _poll_lateness(b)),
        _fleet_row("poll lateness beyond jitter p99 ms", fmt(a.fleet.beyond_jitter_ms.p99),
                   fmt(b.fleet.beyond_jitter_ms.p99)),
        _fleet_row(f"checks / s (expected {f.expected_checks_per_second:,.0f})", "0",
                   fmt(b.health.checks / b.fleet.window, 0)),
        _fleet_row("failed checks", "-", f"{b.health.failed:,.0f}"),
        _fleet_row("check lateness p50 / p99 ms", "-",
                   f"{_late_ms(b.health, 0.5)} / {_late_ms(b.health, 0.99)}"),
        _fleet_row("checks started > 10 ms / > 100 ms late", "-",
                   f"{fmt(100 * b.health.late_share(0.01), 2)} % / "
                   f"{fmt(100 * b.health.late_share(0.1), 2)} %"),
        _fleet_row("writes / min in steady state", fmt(a.fleet.writes_per_min, 2),
                   fmt(b.fleet.writes_per_min, 2)),
        _fleet_row("accept-and-close server CPU %", fmt(a.acceptor_cpu_pct),
                   fmt(b.acceptor_cpu_pct)),
        _fleet_row("emulator / apiserver / etcd CPU %", _others(a), _others(b)),
        _fleet_row("machine busy / other cores", _machine(a), _machine(b)),
    ]  # fmt: skip
    lines = [
        f"### Fleet of {f.services:,} x {f.instances} instances, checked every "
        f"{f.check_interval:g} s",
        "",
        *_table(["measure", "without checks", "with checks", "with ÷ without"], rows),
    ]
    busiest = max(a.fleet.other_cores, b.fleet.other_cores)
    if busiest > CONTENDED_CORES:
        lines += [
            f"**Contended run**: processes outside the bench used up to {fmt(busiest, 2)} of "
            f"the {h.cores} cores during these windows, so the operator did not get the CPU "
            "it needed; the figures show an overloaded machine more than the cost of checks. "
            "Re-run on an idle machine.",
            "",
        ]
    level = res.level(f.services)
    if level is not None:
        lines += [
            f"The fleet scenario of this run ({level.services:,} services, 10.x instances): "
            f"operator CPU {fmt(level.cpu_pct / 100, 3)} cores; with checks here "
            f"{_x(ratio(b.fleet.cpu_pct, level.cpu_pct))} that.",
            "",
        ]
    return lines


def _polls(w: CheckedWindow) -> str:
    r = w.fleet
    return f"{r.polls_done:,} / {r.polls_scheduled:,.0f} ({fmt(r.polls_pct, 2)} %)"


def _poll_lateness(w: CheckedWindow) -> str:
    return f"{fmt(w.fleet.lateness_ms.p50)} / {fmt(w.fleet.lateness_ms.p99)}"


def _late_ms(counters: HealthCounters, q: float) -> str:
    value = counters.lateness_quantile(q)
    if math.isinf(value):  # beyond the histogram's last finite bucket
        return f"> {fmt(1000 * counters.highest_bound, 0)}"
    return fmt(1000 * value, 2)


def _others(w: CheckedWindow) -> str:
    r = w.fleet
    return f"{fmt(r.emulator_cpu_pct)} / {fmt(r.apiserver_cpu_pct)} / {fmt(r.etcd_cpu_pct)}"


def _machine(w: CheckedWindow) -> str:
    return f"{fmt(w.fleet.machine_cores, 2)} / {fmt(w.fleet.other_cores, 2)}"


def health_section(res: Results) -> list[str]:
    h = res.health
    if h is None:
        return []
    s = res.settings
    method = METHOD.format(
        addresses=h.cost.addresses, scheduled=h.cost.checker.targets,
        interval=h.cost.checker.interval, duration=h.cost.checker.duration,
        services=h.kills.services, ttl=h.kills.ttl, window=s.health_window,
    )  # fmt: skip
    return [
        HEADING,
        "",
        f"Measured {h.date} at revision {h.revision}, on this machine ({h.cores} cores), by "
        f"`python -m bench{' --quick' if s.quick else ''} --scenarios health` (part of a full "
        "`make bench` too; a run of this scenario alone rewrites this section only). Every "
        "address checked or called belongs to a network-lab host the run created.",
        "",
        *cost_lines(h),
        *kill_lines(h),
        *fleet_lines(h, res),
        method,
    ]


def section_bounds(text: str, heading: str = HEADING) -> tuple[int, int] | None:
    """Character range of a section (by default Health checks) in a rendered file (heading
    to the next "## " heading or the end), or None."""
    start = text.find(f"\n{heading}\n")
    if start < 0:
        return None
    start += 1
    after = text.find("\n## ", start + len(heading))
    return start, len(text) if after < 0 else after + 1


def splice(text: str, section: str, heading: str = HEADING) -> str:
    """`text` with its `heading` section replaced by `section` (which may be empty),
    or `section` inserted before the first of FOLLOWERS (else at the end)."""
    bounds = section_bounds(text, heading)
    if bounds is not None:
        return text[: bounds[0]] + section + text[bounds[1] :]
    if not section:
        return text
    spots = [i + 1 for f in FOLLOWERS if (i := text.find(f"\n{f}\n")) >= 0]
    at = min(spots) if spots else len(text)
    head = text[:at] if text[:at].endswith("\n") or not text[:at] else text[:at] + "\n"
    return head + section + text[at:]


def current_section(text: str, heading: str = HEADING) -> str:
    bounds = section_bounds(text, heading)
    return "" if bounds is None else text[bounds[0] : bounds[1]]
