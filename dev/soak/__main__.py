"""python -m soak [--minutes 30] [--services 1000] [--output F.json] [--plot F.png] ..."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from soak.report import build_summary
from soak.run import SoakSettings, run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="Run the benchmark fleet against a local control plane for a long while, "
        "with discovery faults, instance changes and operator restarts; check that no "
        "endpoint is lost and write a JSON summary and a plot.",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="chaos duration")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10, help="per service at the start")
    parser.add_argument("--interval", type=float, default=5.0, help="poll interval, s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restarts", type=int, help="default: one per 7 minutes, at least 1")
    parser.add_argument("--faults-per-minute", type=int, help="default: services / 50")
    parser.add_argument("--changes-per-minute", type=int, help="default: services / 100")
    parser.add_argument("--sample-seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, help="s after sync and restarts not steady")
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="delete a slice behind the operator's back half-way; pass only if it is caught",
    )
    parser.add_argument("--output", type=Path, help="JSON summary (default: in the work dir)")
    parser.add_argument("--plot", type=Path, help="PNG (default: in the work dir)")
    parser.add_argument("--workdir", type=Path, help="logs (default: a temp dir)")
    return parser


def settings_from(args: argparse.Namespace) -> SoakSettings:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="directservice-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    minutes = float(args.minutes)
    return SoakSettings(
        services=args.services,
        minutes=minutes,
        workdir=workdir,
        instances=args.instances,
        interval=args.interval,
        seed=args.seed,
        restarts=args.restarts if args.restarts is not None else max(1, round(minutes / 7)),
        faults_per_minute=args.faults_per_minute or max(1, args.services // 50),
        changes_per_minute=args.changes_per_minute or max(1, args.services // 100),
        sample_seconds=args.sample_seconds,
        warmup=args.warmup if args.warmup is not None else min(120.0, minutes * 60 / 10),
        self_test=args.self_test,
    )


def finite(value: Any) -> Any:
    """NaN and infinities as null: strict JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def headline(summary: dict[str, Any]) -> list[str]:
    rss, fds, writes, loss = summary["rss_kib"], summary["fds"], summary["writes"], summary["loss"]
    return [
        f"RSS: max {rss['max'] / 1024:.0f} MiB, steady slope {rss['slope_per_min']:.1f} KiB/min "
        f"(noise {rss['noise']:.0f} KiB, {rss['points']} samples, {rss['segments']} segments)",
        f"fds: max {fds['max']}, slope {fds['slope_per_min']:.3f}/min",
        f"writes after sync: operator {writes['operator_after_sync']} "
        f"({writes['operator_per_minute']}/min), API server {writes['apiserver_after_sync_total']}"
        f" ({writes['apiserver_per_minute']}/min)",
        f"restarts: {', '.join(r['signal'] for r in summary['restarts']) or 'none'}",
        f"polls done / scheduled: {summary['polls']['steady_pct']:.1f} % steady, "
        f"{summary['polls']['chaos_pct']:.1f} % over the chaos; machine busy "
        f"{100 * summary['cpu'].get('machine_busy_fraction', 0):.0f} %",
        f"endpoint loss: {loss['total']} ({loss['settled_checks']:,} settled checks, "
        f"{loss['settled_coverage_pct']} % of slots; {loss['published_states_judged']:,} "
        f"published states judged; final {loss['final']['settled']}/{loss['final']['services']}"
        f" settled); late while the operator's polls failed: {loss['late_while_failing']} "
        f"checks of {loss['services_late']} services",
    ]


def _terminate(signum: int, frame: object) -> None:
    print(f"soak: stopped by signal {signum}; cleaning up", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the cleanup of every process we started


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    signal.signal(signal.SIGTERM, _terminate)
    print(f"soak: work dir {settings.workdir}", flush=True)
    summary = finite(build_summary(run(settings)))
    output = args.output or settings.workdir / "soak.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=1) + "\n")
    from soak.plot import plot  # noqa: PLC0415  (matplotlib only once there is a summary)

    picture = args.plot or settings.workdir / "soak.png"
    plot(summary, picture)
    print("\n".join(headline(summary)))
    print(f"soak: wrote {output} and {picture} (logs in {settings.workdir})")
    test = summary["self_test"]
    if test is not None:
        print(f"self-test: {'PASSED' if test['passed'] else 'FAILED'} {test}")
        return 0 if test["passed"] else 1
    return 0 if summary["loss"]["total"] == 0 and not summary["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
