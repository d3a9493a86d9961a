"""python -m bench [--quick] [--scenarios a,b] [--duration S] ..."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from bench.document import write
from bench.env import Settings
from bench.healthreport import health_section
from bench.report import curve, targets
from bench.runner import run
from devenv.paths import REPO_ROOT

SCENARIOS = (
    "fleet", "propagation", "large", "curve", "profile", "http", "health", "handover",
    "coalesce", "overload", "shards",
)  # fmt: skip


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(part) for part in text.split(",") if part.strip()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the operator against a local kube-apiserver + etcd and the "
        "discovery emulator; print the results and write docs/benchmarks.md.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument("--duration", type=float, help="steady-state window per fleet size, s")
    parser.add_argument("--fleet-size", type=int, help="services in the fleet scenario")
    parser.add_argument("--curve", type=_sizes, help="fleet sizes of the curve, e.g. 100,1000")
    parser.add_argument("--changes", type=int, help="propagation changes")
    parser.add_argument("--large-instances", type=int, help="instances of the large service")
    parser.add_argument("--health-services", type=int, help="services of the checked fleet")
    parser.add_argument("--health-kills", type=int, help="instance kills of the health scenario")
    parser.add_argument("--shard-services", type=int, help="services of the sharding scenario")
    parser.add_argument("--output", type=Path, help="Markdown report path")
    parser.add_argument("--workdir", type=Path, help="logs and profiles (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=1)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    chosen = frozenset(part.strip() for part in args.scenarios.split(",") if part.strip())
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    quick = bool(args.quick)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="directservice-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    default_output = workdir / "benchmarks.md" if quick else REPO_ROOT / "docs" / "benchmarks.md"
    return Settings(
        quick=quick,
        scenarios=chosen,
        duration=args.duration or (20.0 if quick else 120.0),
        fleet_size=args.fleet_size or (100 if quick else 1000),
        curve=args.curve or ((25, 100, 250) if quick else (100, 1000, 3000)),
        instances=10,
        interval=5.0,
        large_instances=args.large_instances or (2000 if quick else 10_000),
        changes=args.changes or (20 if quick else 200),
        probe_interval=1.0,
        profile_seconds=15.0 if quick else 60.0,
        http_rate=200.0,
        http_seconds=5.0 if quick else 30.0,
        workdir=workdir,
        output=args.output or default_output,
        seed=args.seed,
        health_services=args.health_services or (100 if quick else 1000),
        health_kills=args.health_kills or (10 if quick else 50),
        health_window=15.0 if quick else 60.0,
        handover_rounds=3 if quick else 20,
        coalesce_services=100 if quick else 1000,
        overload_services=500 if quick else 6000,
        shard_services=args.shard_services or (400 if quick else 6000),
    )


def _terminate(signum: int, frame: object) -> None:
    print(f"bench: stopped by signal {signum}; cleaning up", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)  # unwinds through the cleanup of every process we started


def main(argv: list[str] | None = None) -> int:
    settings = settings_from(build_parser().parse_args(argv))
    signal.signal(signal.SIGTERM, _terminate)
    results = run(settings)
    print()
    print("\n".join(targets(results)))
    if results.levels:
        print("\n".join(curve(results)))
    if results.health is not None:
        print("\n".join(health_section(results)))
    if settings.output is not None:
        write(results, settings.output)
        print(f"bench: wrote {settings.output} (logs and profile in {settings.workdir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
