"""Run fuzz targets for a bounded time each and summarise what libFuzzer found.

    python -m fuzz.run --target pai_eas --seconds 60
    python -m fuzz.run --target all --seconds 60     # one after the other (make fuzz)
    python -m fuzz.run --list

Each target runs in its own process (libFuzzer exits the process that runs it). Seeds come
from tests/fuzz-corpus/<target>/ and are only read; inputs libFuzzer finds interesting go to
a work folder outside the clone, so the next run starts from them. A crashing input is
written into tests/fuzz-corpus/<target>/ as crash-<sha1>: the unit tier replays that folder,
so the crash stays a failing regression test until it is fixed. Exit status 1 when any
target crashed.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from devenv.paths import DEV_ROOT, REPO_ROOT, child_env

CORPUS_ROOT = REPO_ROOT / "tests" / "fuzz-corpus"
DICTIONARY = DEV_ROOT / "fuzz" / "json.dict"
DEFAULT_WORK = Path.home() / ".cache" / "directservice-operator" / "fuzz"
TARGET_NAMES = ("pai_eas", "http_json", "modelarts", "static", "spec", "http_answer")
STARTUP_SLACK = 120.0  # loading the corpus and instrumenting imports, before the clock runs

_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")
_FINAL = re.compile(r"^stat::(\w+):\s+(\d+)")
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


@dataclass(frozen=True)
class FuzzSummary:
    target: str
    runs: int
    execs_per_second: int
    coverage: int  # libFuzzer "cov": instrumented edges reached
    features: int  # libFuzzer "ft": edges plus hit counts and value profiles
    corpus: int
    seconds: float
    crashes: tuple[str, ...]
    exit_code: int

    @property
    def failed(self) -> bool:
        return bool(self.crashes) or self.exit_code != 0

    def line(self) -> str:
        found = ", ".join(self.crashes) if self.crashes else "none"
        return (
            f"{self.target:10} {self.runs:>9} runs  {self.execs_per_second:>6} exec/s  "
            f"cov {self.coverage:>5}  ft {self.features:>6}  corpus {self.corpus:>5}  "
            f"{self.seconds:5.0f} s  exit {self.exit_code}  crashes: {found}"
        )


def libfuzzer_args(target: str, seconds: int, max_len: int, work: Path) -> list[str]:
    seeds = CORPUS_ROOT / target
    return [
        str(work),  # first folder: where libFuzzer adds new inputs
        str(seeds),
        f"-max_total_time={seconds}",
        "-timeout=10",  # one input taking longer is a finding (a hang)
        "-rss_limit_mb=2048",
        f"-max_len={max_len}",
        f"-dict={DICTIONARY}",
        f"-artifact_prefix={seeds}/",
        "-print_final_stats=1",
    ]


def fuzz_one(
    target: str, seconds: int, max_len: int, work_root: Path, *, echo: bool, bytes_only: bool
) -> FuzzSummary:
    work = work_root / target
    work.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "fuzz.engine",
        target,
        *(["--bytes"] if bytes_only else []),
        *libfuzzer_args(target, seconds, max_len, work),
    ]
    started = time.monotonic()
    status: tuple[int, int, int, int] = (0, 0, 0, 0)
    final: dict[str, int] = {}
    crashes: list[str] = []
    with subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, errors="replace", env=child_env(), cwd=REPO_ROOT
    ) as proc:
        assert proc.stderr is not None
        # libFuzzer keeps its own time limit; this one only ends a run that hangs outright.
        watchdog = threading.Timer(seconds + STARTUP_SLACK, proc.kill)
        watchdog.start()
        try:
            for line in proc.stderr:
                if echo:
                    sys.stderr.write(line)
                if match := _STATUS.match(line):
                    runs, cov, ft, corp = (int(g) for g in match.groups())
                    status = (runs, cov, ft, corp)
                elif match := _FINAL.match(line):
                    final[match.group(1)] = int(match.group(2))
                elif match := _ARTIFACT.search(line):
                    crashes.append(Path(match.group(1)).name)
            code = proc.wait()
        finally:
            watchdog.cancel()
    elapsed = time.monotonic() - started
    runs = final.get("number_of_executed_units", status[0])
    return FuzzSummary(
        target=target,
        runs=runs,
        execs_per_second=final.get("average_exec_per_sec", int(runs / max(elapsed, 1e-9))),
        coverage=status[1],
        features=status[2],
        corpus=status[3],
        seconds=elapsed,
        crashes=tuple(crashes),
        exit_code=code,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fuzz.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--target", default="all", choices=[*TARGET_NAMES, "all"])
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    parser.add_argument("--max-len", type=int, default=8192, help="largest input in bytes")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(os.environ.get("DIRECTSERVICE_FUZZ_DIR") or DEFAULT_WORK),
        help="where the growing corpus is kept between runs (outside the clone)",
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument(
        "--bytes", action="store_true", help="byte-level mutations only (no JSON mutator)"
    )
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(TARGET_NAMES))
        return 0
    names = TARGET_NAMES if args.target == "all" else (args.target,)
    summaries = [
        fuzz_one(
            name,
            args.seconds,
            args.max_len,
            args.work,
            echo=not args.quiet,
            bytes_only=args.bytes,
        )
        for name in names
    ]
    print("\n".join(s.line() for s in summaries))
    failed = [s.target for s in summaries if s.failed]
    if failed:
        where = CORPUS_ROOT.relative_to(REPO_ROOT)
        print(
            f"crashes in {', '.join(failed)}: inputs saved under {where}/<target>/; "
            "the unit tier replays them (tests/unit/test_fuzz_regressions.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
