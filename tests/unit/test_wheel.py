"""The wheel holds the operator and its CLI, and nothing of the dev root or the tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "operator" / "directservice"


def test_the_wheel_holds_exactly_the_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("directservice_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    code = {n for n in names if not n.startswith("directservice_operator-")}
    expected = {
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert code == expected
    assert not any(part in n for n in names for part in ("devenv/", "bench/", "tests/"))
