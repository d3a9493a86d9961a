"""A small docs/benchmarks.md and bench Settings, for the tests of how sections are written."""

from __future__ import annotations

from pathlib import Path

from bench.env import Settings

DOC = """\
# Benchmarks

Header.

## Targets

| a | b |

## Large service

Large figures.

## Notes from this run

- a note

## How each number is measured

Method.
"""


def bench_settings(tmp: Path, scenarios: set[str]) -> Settings:
    return Settings(
        quick=False, scenarios=frozenset(scenarios), duration=120.0, fleet_size=1000,
        curve=(100,), instances=10, interval=5.0, large_instances=10_000, changes=200,
        probe_interval=1.0, profile_seconds=60.0, http_rate=200.0, http_seconds=30.0,
        workdir=tmp, output=tmp / "benchmarks.md",
    )  # fmt: skip
