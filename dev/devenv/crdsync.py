"""Keep the Helm chart's copy of the CRDs identical to manifests/crds, the single source.

Helm installs CRDs only from the chart's own crds/ folder and cannot reach outside the
chart, so the chart carries a byte-for-byte copy of every file in manifests/crds. A file
that exists only in the chart's crds/ folder is left alone.

    python -m devenv.crdsync           # copy what differs, say what changed
    python -m devenv.crdsync --check   # exit 1 if a copy differs (for CI)
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from devenv.paths import REPO_ROOT

SOURCE_DIR = REPO_ROOT / "manifests" / "crds"
CHART_CRD_DIR = REPO_ROOT / "charts" / "directservice-operator" / "crds"


@dataclass(frozen=True)
class Drift:
    """One source CRD file whose chart copy is missing or differs."""

    source: Path
    copy: Path

    @property
    def missing(self) -> bool:
        return not self.copy.exists()

    def describe(self) -> str:
        what = "is missing" if self.missing else "differs from"
        return f"{_shown(self.copy)} {what} {_shown(self.source)}"


def _shown(path: Path) -> str:
    """`path` relative to the repository when inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def source_files(source_dir: Path = SOURCE_DIR) -> list[Path]:
    files = sorted(p for p in source_dir.glob("*.y*ml") if p.is_file())
    if not files:
        raise FileNotFoundError(f"no CRD files in {source_dir}")
    return files


def drifts(source_dir: Path = SOURCE_DIR, chart_dir: Path = CHART_CRD_DIR) -> list[Drift]:
    """Source files whose copy in `chart_dir` is missing or not byte-identical."""
    found: list[Drift] = []
    for source in source_files(source_dir):
        copy = chart_dir / source.name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            found.append(Drift(source, copy))
    return found


def sync(source_dir: Path = SOURCE_DIR, chart_dir: Path = CHART_CRD_DIR) -> list[Drift]:
    """Copy every drifted file into `chart_dir`; return what was copied."""
    chart_dir.mkdir(parents=True, exist_ok=True)
    copied = drifts(source_dir, chart_dir)
    for drift in copied:
        shutil.copyfile(drift.source, drift.copy)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devenv.crdsync",
        description="Copy manifests/crds/*.yaml into the Helm chart's crds/ folder.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a chart copy differs"
    )
    args = parser.parse_args(argv)
    if args.check:
        found = drifts()
        for drift in found:
            print(f"out of sync: {drift.describe()}", file=sys.stderr)
        if found:
            print("run: python -m devenv.crdsync", file=sys.stderr)
            return 1
        print("chart CRDs match manifests/crds")
        return 0
    copied = sync()
    for drift in copied:
        print(f"updated {_shown(drift.copy)}")
    if not copied:
        print("chart CRDs already match manifests/crds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
